//! llm-baremetal as a UEFI application: the firmware starts
//! `EFI/BOOT/BOOTX64.EFI`, which finds models on the EFI system partition,
//! lets the user pick one, loads it and chats.
//!
//! This crate is the firmware layer (the only place with `unsafe`); the chat,
//! models and kernels live in the `engine` and `kernels` crates. Its pure
//! logic is unit-tested on the host (`cargo xtask test-efi`), where the crate
//! builds with std and without the entry point.
#![cfg_attr(not(test), no_std)]
#![cfg_attr(not(test), no_main)]
#![cfg_attr(test, allow(dead_code))]

extern crate alloc;

mod app;
mod console;
mod cpu;
mod fs;
mod mem;
mod menu;
mod mp;
#[cfg(not(test))]
mod panic;

#[cfg(not(test))]
#[global_allocator]
static ALLOCATOR: mem::AppAllocator = mem::AppAllocator;

#[cfg(not(test))]
#[uefi::entry]
fn efi_main() -> uefi::Status {
    app::run()
}
