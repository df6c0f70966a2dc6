use clap::Parser;
use ds01::cli::{Cli, CliError, run};

fn main() {
    // Invoked through a `ds01-events` link: the old query tool's name.
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let invoked_as = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned());
    match invoked_as.as_deref() {
        Some("ds01-events") => args.insert(1, "events".into()),
        // Installed as `docker` ahead of the real one on PATH: the wrapper, with no
        // ds01 option parsing at all (every argument belongs to docker).
        Some("docker") => {
            let code = ds01::cli::docker_cmd::run(args.split_off(1), None);
            std::process::exit(code);
        }
        _ => {}
    }
    let cli = Cli::parse_from(args);
    if let Err(e) = run(cli) {
        match &e {
            CliError::Exit(_) => {}
            CliError::Config(msg) => eprintln!("{msg}"),
            other => eprintln!("ds01: {other}"),
        }
        std::process::exit(e.code());
    }
}
