//! What differs per chip: the entry point, the fault handlers, the name.
#[cfg(target_arch = "arm")]
mod cortex_m;
#[cfg(target_arch = "arm")]
pub(crate) use cortex_m::NAME;

#[cfg(target_arch = "riscv32")]
mod riscv;
#[cfg(target_arch = "riscv32")]
pub(crate) use riscv::NAME;
