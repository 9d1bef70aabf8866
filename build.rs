//! Compiles proto/distillery.proto with protox (a protobuf compiler in Rust, so no protoc is
//! needed) and generates the prost messages and the tonic client and server.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/distillery.proto");
    let fds = protox::compile(["distillery.proto"], ["proto"])?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
