use clap::Parser;
use ds01::cli::{Cli, CliError, run};

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        match &e {
            CliError::Exit(_) => {}
            CliError::Config(msg) => eprintln!("{msg}"),
            other => eprintln!("ds01: {other}"),
        }
        std::process::exit(e.code());
    }
}
