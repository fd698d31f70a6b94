//! `chorus blacklist add|remove|list`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Result, bail};

use super::library;
use crate::blacklist::{self, Blacklist, Rule};
use crate::cli::{BlacklistAction, BlacklistRule};

fn rule_of(arg: &BlacklistRule) -> Result<Rule> {
    if let Some(h) = &arg.track_hash {
        return Ok(Rule::Hash(blacklist::parse_hash(h)?));
    }
    if let Some(t) = &arg.title {
        if t.trim().is_empty() {
            bail!("--title needs some text");
        }
        return Ok(Rule::Title(t.clone()));
    }
    if let Some(a) = &arg.artist {
        if a.trim().is_empty() {
            bail!("--artist needs some text");
        }
        return Ok(Rule::Artist(a.clone()));
    }
    bail!("give a track hash, --title TEXT or --artist TEXT")
}

/// Runs a blacklist action.
pub fn run(data_dir: &Path, config_dir: &Path, action: &BlacklistAction) -> Result<ExitCode> {
    // The node's HTTP API edits the blacklist too (the operator's page): one edit at a time.
    crate::files::locked(&Blacklist::path(config_dir), || {
        edit(data_dir, config_dir, action)
    })
}

fn edit(data_dir: &Path, config_dir: &Path, action: &BlacklistAction) -> Result<ExitCode> {
    let mut list = Blacklist::load(config_dir)?;
    match action {
        BlacklistAction::Add(arg) => {
            let rule = rule_of(arg)?;
            if list.rules.insert(rule.clone()) {
                list.save(config_dir)?;
                println!("added: {rule}");
            } else {
                println!("already there: {rule}");
            }
            print_matches(
                data_dir,
                &Blacklist {
                    rules: [rule].into(),
                },
            );
        }
        BlacklistAction::Remove(arg) => {
            let rule = rule_of(arg)?;
            if list.rules.remove(&rule) {
                list.save(config_dir)?;
                println!("removed: {rule}");
            } else {
                bail!(
                    "the blacklist has no rule \"{rule}\"; `chorus blacklist list` shows the rules"
                );
            }
        }
        BlacklistAction::List => {
            if list.rules.is_empty() {
                println!(
                    "the blacklist is empty ({})",
                    Blacklist::path(config_dir).display()
                );
            }
            for rule in &list.rules {
                println!("{rule}");
            }
            print_matches(data_dir, &list);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Lists the library tracks the rules catch (other nodes' tracks are caught when they win).
fn print_matches(data_dir: &Path, list: &Blacklist) {
    let Ok((_, index)) = library::load(data_dir) else {
        return;
    };
    let refs: Vec<_> = index
        .tracks()
        .into_iter()
        .map(chorus_bootstrap::track_ref)
        .collect();
    let caught: Vec<_> = refs.iter().filter(|t| list.rule_for(t).is_some()).collect();
    if !caught.is_empty() {
        println!("in this node's library:");
        for t in caught {
            println!(
                "  {}  {}",
                t.track_hash.to_hex(),
                crate::node::track_name(t)
            );
        }
    }
}
