//! Generates the gRPC code from proto/ with protox, a pure-Rust protobuf
//! compiler, so no system protoc is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos =
        ["../../proto/raft.proto", "../../proto/controller.proto", "../../proto/admin.proto", "../../proto/replication.proto", "../../proto/coordinator.proto"];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let descriptors = protox::compile(protos, ["../../proto"])?;
    tonic_prost_build::configure()
        // Replicated record batches travel as `Bytes`: the leader hands over
        // what it read from the log, the follower appends what it received,
        // with no copy into a Vec on either side.
        .bytes(".runnel.replication.FetchedPartition.records")
        .compile_fds(descriptors)?;
    Ok(())
}
