#[test]
fn sizes() {
    println!("Output {} OutputKind {} Command {} Event {} Record {}",
      std::mem::size_of::<gateway::runtime::Output>(),
      std::mem::size_of::<gateway::runtime::OutputKind>(),
      std::mem::size_of::<engine::Command>(),
      std::mem::size_of::<engine::Event>(),
      std::mem::size_of::<engine::history::TransferRecord>());
}
