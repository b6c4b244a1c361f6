use riscv_rt::entry;
use semihosting::{println, process};

pub(crate) const NAME: &str = "RISC-V (riscv32imc-unknown-none-elf, QEMU virt)";

#[entry]
fn main() -> ! {
    process::exit(crate::run())
}

/// A trap (illegal instruction, misaligned or faulting access) ends the run.
#[unsafe(export_name = "ExceptionHandler")]
fn exception_handler(_frame: &riscv_rt::TrapFrame) -> ! {
    println!(
        "exception: mcause {:#x} at mepc {:#010x}",
        riscv::register::mcause::read().bits(),
        riscv::register::mepc::read()
    );
    process::exit(3)
}
