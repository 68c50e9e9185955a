//! The panic handler: in firmware a panic must not hang the machine. The
//! message goes to the console, then the machine powers off (QEMU exits).

use core::fmt::Write;
use core::panic::PanicInfo;
use core::sync::atomic::{AtomicBool, Ordering};
use core::time::Duration;

use uefi::{boot, system, Status};

use crate::console::ConOut;
use crate::{app, cpu, mp};

static PANICKING: AtomicBool = AtomicBool::new(false);

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    if !cpu::on_bsp() {
        // Worker cores may not call the firmware: the bootstrap core reports it.
        mp::ap_panicked(info);
    }
    if PANICKING.swap(true, Ordering::AcqRel) {
        // A panic while reporting a panic: just power off.
        app::shutdown(Status::ABORTED);
    }
    let _ = write!(ConOut, "\n\n*** llm-baremetal stopped: {info}\n");
    let _ = writeln!(ConOut, "The machine will power off in 10 seconds (or press a key).");
    for _ in 0..1000 {
        if let Ok(Some(_)) = system::with_stdin(|input| input.read_key()) {
            break;
        }
        boot::stall(Duration::from_millis(10));
    }
    app::shutdown(Status::ABORTED)
}
