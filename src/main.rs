fn main() -> std::process::ExitCode {
    crossdock::cli::main()
}
