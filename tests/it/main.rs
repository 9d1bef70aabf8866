//! The integration tests, one binary (each module an area): linking burn once keeps the suite's
//! build short. Fixtures shared by several areas are in `common`.

mod augment;
mod characterise;
mod cl_memory;
mod cl_metrics;
mod client_state;
mod common;
mod compare;
mod continual;
mod data;
mod device_check;
mod difficulty;
mod distill;
mod doctor;
mod fcl;
mod federated;
mod fetch;
mod fuzz;
mod loopback;
mod manual;
mod model;
mod mtt;
mod partition;
mod plots;
mod privacy;
mod privacy_runs;
mod resume;
mod run;
mod scenario;
mod selmatch;
mod stream;
mod torchvision;
mod trajectory;
mod unroll;
mod wire;
mod zca;
