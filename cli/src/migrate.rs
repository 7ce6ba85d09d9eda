//! `hookstream migrate`.

use hookstream_core::tool::ToolConfig;

pub(crate) async fn run(config: &ToolConfig) -> anyhow::Result<()> {
    let pool = hookstream_core::db::connect(&config.database).await?;
    let applied = hookstream_core::db::migrate(&pool).await?;
    if applied == 0 {
        println!("database is up to date");
    } else {
        println!("applied {applied} migration(s)");
    }
    Ok(())
}
