//! A minimal x86-64 UEFI application, assembled here byte by byte, for tests
//! that need something OVMF will really load and run from an image without a
//! cross-compiled build of the real app.
//!
//! The image is a PE32+ file with one `.text` section. Its entry point prints
//! a message through `SystemTable->ConOut->OutputString` (so it goes through
//! the firmware's console, and so to the serial port), then either returns
//! `EFI_SUCCESS` to the boot manager, writes a byte to the `isa-debug-exit`
//! port 0xf4 (QEMU then exits with status `(byte << 1) | 1`), or halts forever.

/// What the application does after printing its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// Return `EFI_SUCCESS` (the boot manager moves on to the next option).
    Return,
    /// `out 0xf4, byte`: QEMU ends with status `(byte << 1) | 1`.
    DebugExit(u8),
    /// `hlt` in a loop, forever.
    Hang,
}

const TEXT_RVA: u32 = 0x1000;
const FILE_ALIGN: usize = 0x200;
const SECTION_ALIGN: u32 = 0x1000;

fn code(message: &str, finish: Finish) -> Vec<u8> {
    let mut c = Vec::new();
    c.extend([0x48, 0x83, 0xec, 0x28]); // sub rsp, 0x28 (shadow space, 16-byte alignment)
    c.extend([0x48, 0x8b, 0x4a, 0x40]); // mov rcx, [rdx + 0x40]  ; SystemTable->ConOut
    let lea_at = c.len();
    c.extend([0x48, 0x8d, 0x15, 0, 0, 0, 0]); // lea rdx, [rip + message]
    c.extend([0xff, 0x51, 0x08]); // call [rcx + 8]  ; ConOut->OutputString(ConOut, message)
    match finish {
        Finish::Return => {}
        Finish::DebugExit(v) => {
            c.extend([0x66, 0xba, 0xf4, 0x00]); // mov dx, 0xf4
            c.extend([0xb0, v]); // mov al, v
            c.push(0xee); // out dx, al
        }
        Finish::Hang => {
            c.extend([0xf4, 0xeb, 0xfd]); // hlt; jmp back to hlt
        }
    }
    c.extend([0x31, 0xc0]); // xor eax, eax  ; EFI_SUCCESS
    c.extend([0x48, 0x83, 0xc4, 0x28]); // add rsp, 0x28
    c.push(0xc3); // ret
    if c.len() % 2 == 1 {
        c.push(0x90);
    }
    let message_at = c.len();
    let rel = (message_at - (lea_at + 7)) as u32;
    c[lea_at + 3..lea_at + 7].copy_from_slice(&rel.to_le_bytes());
    for unit in message.encode_utf16().chain([0]) {
        c.extend(unit.to_le_bytes());
    }
    c
}

/// The bytes of a `.efi` file that prints `message` (use `\r\n` for new
/// lines) and then does `finish`.
pub fn tiny_efi_app(message: &str, finish: Finish) -> Vec<u8> {
    let text = code(message, finish);
    let raw_size = text.len().next_multiple_of(FILE_ALIGN);
    let image_size = TEXT_RVA + (text.len() as u32).next_multiple_of(SECTION_ALIGN);

    let mut f = vec![0u8; FILE_ALIGN];
    // DOS header: signature and the offset of the PE header.
    f[0..2].copy_from_slice(b"MZ");
    f[0x3c..0x40].copy_from_slice(&0x40u32.to_le_bytes());
    let mut w = Writer { buf: &mut f, at: 0x40 };
    w.bytes(b"PE\0\0");
    // COFF file header.
    w.u16(0x8664); // machine: x86-64
    w.u16(1); // sections
    w.u32(0); // time stamp
    w.u32(0); // symbol table
    w.u32(0); // symbols
    w.u16(240); // size of the PE32+ optional header with 16 data directories
    w.u16(0x0022); // executable image, large address aware (relocations not stripped)
                   // Optional header (PE32+).
    w.u16(0x20b);
    w.u16(0); // linker version
    w.u32(raw_size as u32); // size of code
    w.u32(0); // size of initialized data
    w.u32(0); // size of uninitialized data
    w.u32(TEXT_RVA); // entry point
    w.u32(TEXT_RVA); // base of code
    w.u64(0x1000_0000); // image base (the code is position-independent)
    w.u32(SECTION_ALIGN);
    w.u32(FILE_ALIGN as u32);
    w.u32(0); // OS version
    w.u32(0); // image version
    w.u32(0); // subsystem version
    w.u32(0); // Win32 version
    w.u32(image_size);
    w.u32(FILE_ALIGN as u32); // size of headers
    w.u32(0); // checksum
    w.u16(10); // subsystem: EFI application
    w.u16(0); // DLL characteristics
    w.u64(0x10000); // stack reserve
    w.u64(0x10000); // stack commit
    w.u64(0); // heap reserve
    w.u64(0); // heap commit
    w.u32(0); // loader flags
    w.u32(16); // data directories (all empty: no imports, no relocations needed)
    w.at += 16 * 8;
    // Section table.
    w.bytes(b".text\0\0\0");
    w.u32(text.len() as u32); // virtual size
    w.u32(TEXT_RVA);
    w.u32(raw_size as u32);
    w.u32(FILE_ALIGN as u32); // file offset of the raw data
    w.u32(0); // relocations
    w.u32(0); // line numbers
    w.u16(0);
    w.u16(0);
    w.u32(0x6000_0020); // code, execute, read
    assert!(w.at <= FILE_ALIGN);

    f.extend(&text);
    f.resize(FILE_ALIGN + raw_size, 0);
    f
}

struct Writer<'a> {
    buf: &'a mut Vec<u8>,
    at: usize,
}

impl Writer<'_> {
    fn bytes(&mut self, b: &[u8]) {
        self.buf[self.at..self.at + b.len()].copy_from_slice(b);
        self.at += b.len();
    }
    fn u16(&mut self, v: u16) {
        self.bytes(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.bytes(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }
}
