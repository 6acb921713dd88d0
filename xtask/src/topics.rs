//! `cargo xtask topics`: `deploy/topics.tsv`, the topic table for the compose and Kubernetes
//! init jobs, generated from the one table in the code — and its copy inside the kustomize base
//! (`deploy/k8s/base/init/topics.tsv`: kustomize reads files only inside the base).

use anyhow::{Context as _, bail};
use polytape_model::TopicNames;

use crate::paths;

/// Where the table is written, relative to the workspace root.
const TABLE_FILES: [&str; 2] = ["deploy/topics.tsv", "deploy/k8s/base/init/topics.tsv"];

pub(crate) fn run(check: bool) -> anyhow::Result<()> {
    let rendered = TopicNames::default().render_table();
    for file in TABLE_FILES {
        let path = paths::workspace_root().join(file);
        if check {
            let committed = std::fs::read_to_string(&path).unwrap_or_default();
            if committed != rendered {
                bail!(
                    "{} is stale; run `cargo xtask topics` and commit it",
                    path.display()
                );
            }
            println!("{} is up to date", path.display());
            continue;
        }
        std::fs::write(&path, &rendered)
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
