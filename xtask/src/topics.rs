//! `cargo xtask topics`: `deploy/topics.tsv`, the topic table for the compose and Kubernetes
//! init jobs, generated from the one table in the code.

use anyhow::{Context as _, bail};
use polytape_model::TopicNames;

use crate::paths;

pub(crate) fn run(check: bool) -> anyhow::Result<()> {
    let path = paths::workspace_root().join("deploy/topics.tsv");
    let rendered = TopicNames::default().render_table();
    if check {
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        if committed != rendered {
            bail!(
                "{} is stale; run `cargo xtask topics` and commit it",
                path.display()
            );
        }
        println!("{} is up to date", path.display());
        return Ok(());
    }
    std::fs::write(&path, rendered).with_context(|| format!("cannot write {}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}
