//! Present so the build-dependencies in Cargo.toml take part in feature
//! unification for build scripts and proc macros.

fn main() {}
