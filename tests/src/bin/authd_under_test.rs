fn main() -> std::process::ExitCode {
    authd::entry::main()
}
