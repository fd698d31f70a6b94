//! The configuration file: `config.toml` in the config directory (the platform's, or
//! `--config-dir`), one key per flag of `chorus run` and `chorus bootstrap` (and `data_dir`,
//! `log_format`), named as the flag without its dashes, `-` or `_` alike
//! (`http_listen = "0.0.0.0:7300"`, `volume = 60`, `mute = true`, `peer = ["/ip4/..."]`). A flag given on the command line (or its environment
//! variable) overrides the file's key.
//!
//! The file is read by giving its keys to the same parser as the command line: each key not
//! given as a flag becomes `--key=value` after the user's flags, so a value is checked exactly
//! as its flag would be, and a bad one is reported with the file's name. `chorus config show`
//! prints the effective configuration and where each value came from.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, CommandFactory, FromArgMatches};

use crate::cli::Cli;
use crate::files;

/// The file in the config directory.
pub const FILE: &str = "config.toml";

/// Subcommands whose flags the file sets.
const CONFIGURED: &[&str] = &["run", "bootstrap", "config"];

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The flag's default.
    Default,
    /// The config file.
    File(PathBuf),
    /// The command line.
    CommandLine,
    /// An environment variable.
    Environment,
}

/// The parsed command line with the file's keys, and the keys the file set.
pub struct Parsed {
    /// The command line.
    pub cli: Cli,
    /// The file read, if any.
    pub file: Option<PathBuf>,
    /// Argument ids the file set.
    pub from_file: Vec<String>,
    /// The file's keys that were used, as written.
    pub keys: Vec<String>,
    /// The matches, for [`show`].
    pub matches: ArgMatches,
}

/// Parses `argv` and the config file of the config directory it names; exits as clap does on a
/// command-line error (help, version, a bad flag).
pub fn parse(argv: Vec<OsString>) -> Result<Parsed> {
    let command = || Cli::command().args_override_self(true);
    let first = command()
        .try_get_matches_from(&argv)
        .unwrap_or_else(|e| e.exit());
    let Some((name, sub)) = first.subcommand() else {
        bail!("no subcommand");
    };
    // The command line alone: a subcommand the file does not configure, or no file.
    let alone = |matches: ArgMatches| {
        let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        Ok(Parsed {
            cli,
            file: None,
            from_file: Vec::new(),
            keys: Vec::new(),
            matches,
        })
    };
    if !CONFIGURED.contains(&name) {
        return alone(first.clone());
    }
    let config_dir = crate::paths::config_dir(first.get_one::<PathBuf>("config_dir").cloned())?;
    let path = config_dir.join(FILE);
    let Some(table) = read(&path)? else {
        return alone(first.clone());
    };
    let cli_command = command();
    let known: Vec<&clap::Command> = ["run", "bootstrap"]
        .iter()
        .filter_map(|n| cli_command.find_subcommand(n))
        .collect();
    let mut target = cli_command
        .find_subcommand(name)
        .context("the subcommand parsed")?;
    let mut given = sub;
    if name == "config" {
        // `chorus config show` takes the flags of `chorus run`.
        let Some(("show", show)) = sub.subcommand() else {
            bail!("`chorus config` needs `show`");
        };
        target = target
            .find_subcommand("show")
            .context("`config show` is a subcommand")?;
        given = show;
    }
    let globals: Vec<clap::Arg> = cli_command
        .get_arguments()
        .filter(|a| a.is_global_set())
        .cloned()
        .collect();
    let (extra, from_file, keys) = flags_of(&table, &known, (target, &globals), given, &path)?;
    let mut argv = argv;
    argv.extend(extra);
    let in_file = |e: clap::Error| {
        // clap's first line, without its "error: " and its hint about --help.
        let text = e.render().to_string();
        let line = text.lines().next().unwrap_or_default();
        anyhow::anyhow!(
            "{}: {}",
            path.display(),
            line.strip_prefix("error: ").unwrap_or(line)
        )
    };
    let matches = command().try_get_matches_from(&argv).map_err(in_file)?;
    let cli = Cli::from_arg_matches(&matches).map_err(in_file)?;
    Ok(Parsed {
        cli,
        file: Some(path),
        from_file,
        keys,
        matches,
    })
}

fn read(path: &Path) -> Result<Option<toml::Table>> {
    files::read_toml(path, || {
        format!(
            "the configuration {} is not valid TOML (keys are flags of `chorus run`: volume = 60)",
            path.display()
        )
    })
}

/// The flags the file's keys stand for (those not given on the command line), and their ids.
/// A key of `run` or `bootstrap` that the `target` subcommand does not have (`network` for
/// `bootstrap`, `seed_queue` for `run`) is left out; one of neither is an error.
fn flags_of(
    table: &toml::Table,
    known: &[&clap::Command],
    (target, globals): (&clap::Command, &[clap::Arg]),
    given: &ArgMatches,
    path: &Path,
) -> Result<(Vec<OsString>, Vec<String>, Vec<String>)> {
    let find = |c: &clap::Command, key: &str| {
        c.get_arguments()
            .find(|a| a.get_long().is_some_and(|l| l.replace('-', "_") == key))
            .cloned()
    };
    let mut flags = Vec::new();
    let mut ids = Vec::new();
    let mut keys = Vec::new();
    for (key, value) in table {
        let normalized = key.replace('-', "_");
        if normalized == "config_dir" {
            bail!(
                "{}: `config_dir` cannot be set in the file it names",
                path.display()
            );
        }
        let global = globals
            .iter()
            .find(|a| {
                a.get_long()
                    .is_some_and(|l| l.replace('-', "_") == normalized)
            })
            .cloned();
        let Some(arg) = find(target, &normalized).or(global) else {
            if known.iter().any(|c| find(c, &normalized).is_some()) {
                continue;
            }
            bail!(
                "{}: unknown key `{key}` (the keys are the flags of `chorus run` without dashes, as `chorus config show` lists them)",
                path.display()
            );
        };
        let id = arg.get_id().as_str().to_owned();
        if matches!(
            given.value_source(&id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue;
        }
        let long = arg.get_long().context("an argument with a long name")?;
        let bad =
            |what: &str| anyhow::anyhow!("{}: `{key}` must be {what}, not {value}", path.display());
        match arg.get_action() {
            ArgAction::SetTrue => match value {
                toml::Value::Boolean(true) => flags.push(OsString::from(format!("--{long}"))),
                toml::Value::Boolean(false) => {}
                _ => return Err(bad("true or false")),
            },
            ArgAction::Append => {
                let toml::Value::Array(items) = value else {
                    return Err(bad("a list"));
                };
                for item in items {
                    flags.push(OsString::from(format!(
                        "--{long}={}",
                        scalar(item).ok_or_else(|| bad("a list of strings or numbers"))?
                    )));
                }
            }
            _ => {
                let text = scalar(value).ok_or_else(|| bad("a string or a number"))?;
                flags.push(OsString::from(format!("--{long}={text}")));
            }
        }
        ids.push(id);
        keys.push(key.clone());
    }
    Ok((flags, ids, keys))
}

fn scalar(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `chorus config show`: every flag of `chorus run` with its effective value and where it came
/// from (hidden testing flags only when set).
pub fn show(parsed: &Parsed) -> Result<String> {
    let Some(("config", sub)) = parsed.matches.subcommand() else {
        bail!("not `chorus config`");
    };
    let Some(("show", show)) = sub.subcommand() else {
        bail!("not `chorus config show`");
    };
    let command = Cli::command();
    let args = command
        .find_subcommand("config")
        .and_then(|c| c.find_subcommand("show"))
        .context("`config show` is a subcommand")?;
    let mut lines: BTreeMap<String, (String, Source)> = BTreeMap::new();
    for arg in args.get_arguments() {
        let id = arg.get_id().as_str();
        if arg.get_long().is_none() || matches!(id, "help" | "version") {
            continue;
        }
        let source = match show.value_source(id) {
            Some(ValueSource::CommandLine) if parsed.from_file.iter().any(|k| k == id) => {
                Source::File(parsed.file.clone().unwrap_or_default())
            }
            Some(ValueSource::CommandLine) => Source::CommandLine,
            Some(ValueSource::EnvVariable) => Source::Environment,
            _ => Source::Default,
        };
        if arg.is_hide_set() && source == Source::Default {
            continue;
        }
        let value = match arg.get_action() {
            ArgAction::SetTrue => show.get_flag(id).to_string(),
            _ => match show.get_raw(id) {
                Some(values) => {
                    let v: Vec<String> = values.map(|v| toml_text(&v.to_string_lossy())).collect();
                    if matches!(arg.get_action(), ArgAction::Append) {
                        format!("[{}]", v.join(", "))
                    } else {
                        v.join(", ")
                    }
                }
                None if matches!(arg.get_action(), ArgAction::Append) => "[]".to_owned(),
                None => "(not set)".to_owned(),
            },
        };
        let key = arg.get_long().unwrap_or(id).replace('-', "_");
        lines.insert(key, (value, source));
    }
    let mut out = match &parsed.file {
        Some(p) => format!(
            "# chorus run: the configuration file {} and the flags given\n",
            p.display()
        ),
        None => "# chorus run: no configuration file; defaults and the flags given\n".to_owned(),
    };
    let width = lines
        .iter()
        .map(|(k, (v, _))| k.len() + v.len() + 3)
        .filter(|w| *w <= 48)
        .max()
        .unwrap_or(0);
    for (key, (value, source)) in &lines {
        let pair = format!("{key} = {value}");
        let from = match source {
            Source::Default => "default".to_owned(),
            Source::File(p) => format!("config file {}", p.display()),
            Source::CommandLine => "command line".to_owned(),
            Source::Environment => "environment".to_owned(),
        };
        out.push_str(&format!("{pair:width$}  # {from}\n"));
    }
    Ok(out)
}

/// A value as TOML writes it: numbers and booleans bare, anything else quoted.
fn toml_text(raw: &str) -> String {
    if raw.parse::<i64>().is_ok()
        || raw.parse::<f64>().is_ok_and(f64::is_finite)
        || raw == "true"
        || raw == "false"
    {
        raw.to_owned()
    } else {
        toml::Value::String(raw.to_owned()).to_string()
    }
}
