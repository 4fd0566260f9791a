use clap::Parser;

fn main() {
    let cli = tora::cli::Cli::parse();
    if let Err(e) = tora::cli::run(cli) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
