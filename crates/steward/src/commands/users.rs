//! `steward whoami`, `steward users ...`, `steward tokens ...`.

use clap::Subcommand;
use steward_types::api::Role;
use steward_types::api::users::{Token, TokenCreate, TokenCreated, User, UserCreate, UserUpdate, WhoAmI};

use super::Context;
use crate::client::segment;
use crate::output::{Format, Table, fields, json, optional};

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// List users.
    List,
    /// Show one user.
    Show { user: String },
    /// Create a user (administrators only).
    Create {
        name: String,
        #[arg(long, value_parser = parse_role)]
        role: Role,
    },
    /// Change a user's role.
    SetRole {
        user: String,
        #[arg(value_parser = parse_role)]
        role: Role,
    },
    /// Delete a user and its tokens.
    Delete { user: String },
}

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// List your tokens (administrators: everybody's, or one user's with --user).
    List {
        #[arg(long)]
        user: Option<String>,
    },
    /// Create a token; its secret is printed once.
    Create {
        name: String,
        /// Owner of the token (administrators only); yourself by default.
        #[arg(long)]
        user: Option<String>,
        /// Lifetime such as 30d or 12h; no expiry by default.
        #[arg(long)]
        expires: Option<String>,
    },
    /// Delete a token by ID.
    Delete { id: String },
}

fn parse_role(text: &str) -> Result<Role, String> {
    Role::parse(text).ok_or_else(|| format!("{text:?} is not a role: use viewer, operator or administrator"))
}

pub async fn whoami(context: &Context) -> anyhow::Result<String> {
    let me: WhoAmI = context.client.get("/whoami", &[]).await?;
    Ok(match context.format {
        Format::Json => json(&me),
        Format::Table => fields(&[("User", me.user), ("Role", me.role.as_str().into()), ("Token", me.token)]),
    })
}

fn user_table(users: &[User]) -> String {
    let mut table = Table::new(&["NAME", "ROLE", "CREATED"]);
    for user in users {
        table.row(vec![user.name.clone(), user.role.as_str().into(), user.created_at.to_string()]);
    }
    table.render()
}

pub async fn run_users(context: &Context, command: UsersCommand) -> anyhow::Result<String> {
    let client = &context.client;
    let user = match command {
        UsersCommand::List => {
            let users: Vec<User> = client.list_all("/users", &[], None).await?;
            return Ok(match context.format {
                Format::Json => json(&users),
                Format::Table => user_table(&users),
            });
        }
        UsersCommand::Show { user } => client.get(&format!("/users/{}", segment(&user)), &[]).await?,
        UsersCommand::Create { name, role } => client.post("/users", &UserCreate { name, role }).await?,
        UsersCommand::SetRole { user, role } => {
            client.patch(&format!("/users/{}", segment(&user)), &UserUpdate { role }).await?
        }
        UsersCommand::Delete { user } => {
            client.delete(&format!("/users/{}", segment(&user))).await?;
            return Ok(match context.format {
                Format::Json => json(&serde_json::json!({ "deleted": user })),
                Format::Table => format!("Deleted user {user}.\n"),
            });
        }
    };
    let user: User = user;
    Ok(match context.format {
        Format::Json => json(&user),
        Format::Table => fields(&[
            ("Name", user.name),
            ("ID", user.id.to_string()),
            ("Role", user.role.as_str().into()),
            ("Created", user.created_at.to_string()),
        ]),
    })
}

pub async fn run_tokens(context: &Context, command: TokensCommand) -> anyhow::Result<String> {
    let client = &context.client;
    match command {
        TokensCommand::List { user } => {
            let query: Vec<(&str, String)> = user.map(|user| vec![("user", user)]).unwrap_or_default();
            let tokens: Vec<Token> = client.list_all("/tokens", &query, None).await?;
            Ok(match context.format {
                Format::Json => json(&tokens),
                Format::Table => {
                    let mut table = Table::new(&["ID", "NAME", "USER", "PREFIX", "EXPIRES", "LAST USED"]);
                    for token in &tokens {
                        table.row(vec![
                            token.id.to_string(),
                            token.name.clone(),
                            token.user.clone(),
                            token.prefix.clone(),
                            optional(&token.expires_at),
                            optional(&token.last_used_at),
                        ]);
                    }
                    table.render()
                }
            })
        }
        TokensCommand::Create { name, user, expires } => {
            let created: TokenCreated =
                client.post("/tokens", &TokenCreate { name, user, expires_in: expires }).await?;
            Ok(match context.format {
                Format::Json => json(&created),
                Format::Table => format!(
                    "Created token {} ({}) for {}. Its secret, shown only now:\n{}\n",
                    created.token.name, created.token.id, created.token.user, created.secret
                ),
            })
        }
        TokensCommand::Delete { id } => {
            client.delete(&format!("/tokens/{}", segment(&id))).await?;
            Ok(match context.format {
                Format::Json => json(&serde_json::json!({ "deleted": id })),
                Format::Table => format!("Deleted token {id}.\n"),
            })
        }
    }
}
