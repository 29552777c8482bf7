//! `steward enrollment-tokens ...`.

use clap::Subcommand;
use steward_types::api::enrollment::{EnrollmentToken, EnrollmentTokenCreate, EnrollmentTokenCreated};

use super::Context;
use crate::client::segment;
use crate::output::{Format, Table, json};

#[derive(Debug, Subcommand)]
pub enum EnrollmentTokensCommand {
    /// List enrollment tokens.
    List,
    /// Create a token; prints the secret to pass to `steward-agent --enroll-token`.
    Create {
        /// How many agents may enroll with it.
        #[arg(long, default_value_t = 1)]
        uses: u32,
        /// Lifetime such as 24h (the default) or 7d.
        #[arg(long)]
        expires: Option<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// Delete a token by ID.
    Delete { id: String },
}

pub async fn run(context: &Context, command: EnrollmentTokensCommand) -> anyhow::Result<String> {
    let client = &context.client;
    match command {
        EnrollmentTokensCommand::List => {
            let tokens: Vec<EnrollmentToken> = client.list_all("/enrollment-tokens", &[], None).await?;
            Ok(match context.format {
                Format::Json => json(&tokens),
                Format::Table => {
                    let mut table = Table::new(&["ID", "PREFIX", "USED", "EXPIRES", "CREATED BY", "DESCRIPTION"]);
                    for token in &tokens {
                        table.row(vec![
                            token.id.to_string(),
                            token.prefix.clone(),
                            format!("{}/{}", token.used, token.uses),
                            token.expires_at.to_string(),
                            token.created_by.clone(),
                            token.description.clone(),
                        ]);
                    }
                    table.render()
                }
            })
        }
        EnrollmentTokensCommand::Create { uses, expires, description } => {
            let body = EnrollmentTokenCreate { uses: Some(uses), expires_in: expires, description };
            let created: EnrollmentTokenCreated = client.post("/enrollment-tokens", &body).await?;
            Ok(match context.format {
                Format::Json => json(&created),
                // The secret alone on stdout, so `TOKEN=$(steward enrollment-tokens create)` works.
                Format::Table => {
                    eprintln!(
                        "Enrollment token {} allows {} enrollment(s) until {}.",
                        created.enrollment_token.id, created.enrollment_token.uses, created.enrollment_token.expires_at
                    );
                    format!("{}\n", created.token)
                }
            })
        }
        EnrollmentTokensCommand::Delete { id } => {
            client.delete(&format!("/enrollment-tokens/{}", segment(&id))).await?;
            Ok(match context.format {
                Format::Json => json(&serde_json::json!({ "deleted": id })),
                Format::Table => format!("Deleted enrollment token {id}.\n"),
            })
        }
    }
}
