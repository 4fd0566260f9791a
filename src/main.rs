use clap::Parser;

fn main() {
    let cli = tora::cli::Cli::parse();
    if let Err(e) = tora::cli::run(cli) {
        // For a person at a terminal: the message, not the HTTP status name behind it.
        eprintln!("error: {}", e.plain());
        std::process::exit(1);
    }
}
