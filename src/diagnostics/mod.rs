//! Checks of a device's numerics against the CPU's ([`doctor`]).

pub mod doctor;
