//! packrat CLI
fn main() {}
