use cortex_m_rt::{entry, exception, ExceptionFrame};
use semihosting::{println, process};

#[cfg(target_abi = "eabi")]
pub(crate) const NAME: &str = "Cortex-M0 (thumbv6m-none-eabi, QEMU microbit)";
#[cfg(target_abi = "eabihf")]
pub(crate) const NAME: &str = "Cortex-M4F (thumbv7em-none-eabihf, QEMU mps2-an386)";

#[entry]
fn main() -> ! {
    process::exit(crate::run())
}

#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    println!("hard fault at pc {:#010x}", frame.pc());
    process::exit(3)
}

#[exception]
unsafe fn DefaultHandler(irq: i16) {
    println!("unexpected exception {irq}");
    process::exit(3)
}
