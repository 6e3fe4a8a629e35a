//! `packrat key`: age identities for encrypted packs.

use std::path::{Path, PathBuf};

use backup_core::crypt::{self, Keyring};
use clap::Subcommand;

use crate::{CliError, exit};

/// `packrat key …`.
#[derive(Debug, Subcommand)]
pub enum KeyAction {
    /// Write a new age identity file (mode 0600, never overwritten) and print its recipient
    /// (the public key for `[plans.NAME.encrypt] recipients`).
    Generate {
        /// The identity file to create.
        #[arg(long, short = 'o', value_name = "FILE")]
        output: PathBuf,
    },
    /// Print the recipients (public keys) of an identity file, like `age-keygen -y`.
    Recipient {
        /// The identity file.
        file: PathBuf,
    },
}

/// Runs a `key` subcommand.
pub fn run(action: KeyAction) -> Result<u8, CliError> {
    match action {
        KeyAction::Generate { output } => generate(&output),
        KeyAction::Recipient { file } => {
            let mut keys = Keyring::new();
            keys.add_identity_file(&file)?;
            for r in keys.recipients() {
                outln!("{r}");
            }
            Ok(exit::OK)
        }
    }
}

fn generate(output: &Path) -> Result<u8, CliError> {
    let recipient = crypt::generate_file(output)?;
    eprintln!(
        "wrote a new age identity to {} (keep it secret, and keep a copy away from the backups: without it, or \
         another recipient's identity, its packs cannot be read)",
        output.display()
    );
    eprintln!("its recipient (public key) follows; put it in [plans.NAME.encrypt] recipients:");
    outln!("{recipient}");
    Ok(exit::OK)
}
