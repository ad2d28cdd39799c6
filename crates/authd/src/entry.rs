//! The command line entry point, shared by the `authd` binary and the test suite's copy.

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command, ConfigCommand, MailCommand, TemplatesCommand};
use crate::Application;

/// Parses the command line, runs the command, and turns a failure into one line on stderr
/// and exit code 1 (clap uses 2 for usage errors).
#[expect(clippy::print_stderr, reason = "the CLI reports failures on stderr")]
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[expect(clippy::print_stdout, reason = "the CLI's answers go to stdout")]
fn run(cli: Cli) -> anyhow::Result<()> {
    let loaded = cli.load_settings()?;
    authd_telemetry::init_tracing(&loaded.settings.log);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(loaded),
        Command::Migrate => {
            let store =
                authd_store::Store::open(&authd_store::StoreOptions::for_command(&loaded.settings));
            let applied = store.migrate()?;
            println!("applied {} migration(s)", applied.len());
            Ok(())
        }
        Command::User(cmd) => {
            println!("{}", crate::cli::run_user(&loaded.settings, &cmd)?);
            Ok(())
        }
        Command::Templates(TemplatesCommand::Check) => {
            println!("{}", crate::cli::templates_check(&loaded.settings)?);
            Ok(())
        }
        Command::Mail(MailCommand::Preview {
            origin,
            kind,
            language,
            to,
        }) => {
            print!(
                "{}",
                crate::cli::mail_preview(
                    &loaded.settings,
                    &origin,
                    &kind,
                    language.as_deref(),
                    &to
                )?
            );
            Ok(())
        }
        Command::Mail(MailCommand::Test { origin, to }) => {
            println!("{}", crate::cli::mail_test(&loaded.settings, &origin, &to)?);
            Ok(())
        }
        Command::Mail(MailCommand::RequeueDead) => {
            println!("{}", crate::cli::mail_requeue_dead(&loaded.settings)?);
            Ok(())
        }
        Command::Healthcheck => {
            println!("{}", crate::cli::healthcheck(&loaded.settings)?);
            Ok(())
        }
        Command::Config(ConfigCommand::Check) => {
            println!("{}", crate::cli::config_summary(&loaded));
            Ok(())
        }
    }
}

fn serve(loaded: authd_settings::Loaded) -> anyhow::Result<()> {
    actix_web::rt::System::new().block_on(async move {
        let env = loaded.environment.name().to_owned();
        let backend = loaded.settings.database_url().backend_name();
        let app = Application::build(loaded).await?;
        tracing::info!(
            environment = %env,
            database = backend,
            port = app.port(),
            metrics_port = app.metrics_port(),
            "authd is serving"
        );
        app.run_until_stopped().await?;
        tracing::info!("authd stopped");
        Ok(())
    })
}
