//! Checks of a device's numerics against the CPU's ([`doctor`]).

pub mod blocks;
pub mod config;
pub mod doctor;
