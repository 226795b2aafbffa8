//! The manual page and shell completions, generated from the clap definitions that `--help`
//! shows (clap_mangen, clap_complete), with the EXIT STATUS, FILES, ENVIRONMENT and EXAMPLES
//! sections written from the same tables as the help text.

use std::{
    io::{self, Write},
    path::Path,
};

use clap::CommandFactory;

use super::{Cli, ENVIRONMENT, EXAMPLES, EXIT_STATUS, FILES};

/// The manual section: a system administration command (as nginx(8), haproxy(1) aside).
pub const MAN_SECTION: &str = "8";

/// Escapes text for roff: backslashes, and a leading `.` or `'` that would start a request.
fn roff(text: &str) -> String {
    let t = text.replace('\\', "\\\\").replace('-', "\\-");
    if t.starts_with(['.', '\'']) {
        format!("\\&{t}")
    } else {
        t
    }
}

/// A `.SH` section of tagged paragraphs.
fn section(w: &mut dyn Write, title: &str, rows: &[(&str, &str)]) -> io::Result<()> {
    writeln!(w, ".SH \"{title}\"")?;
    for (tag, text) in rows {
        writeln!(w, ".TP\n\\fB{}\\fR\n{}", roff(tag), roff(text))?;
    }
    Ok(())
}

/// Writes one page: clap's sections, then ours instead of the plain-text help epilogue.
fn page(cmd: clap::Command, top: bool, w: &mut dyn Write) -> io::Result<()> {
    let man = clap_mangen::Man::new(cmd).section(MAN_SECTION);
    man.render_title(w)?;
    man.render_name_section(w)?;
    man.render_synopsis_section(w)?;
    man.render_description_section(w)?;
    man.render_options_section(w)?;
    man.render_subcommands_section(w)?;
    section(w, "EXIT STATUS", EXIT_STATUS)?;
    if top {
        section(w, "FILES", FILES)?;
        section(w, "ENVIRONMENT", ENVIRONMENT)?;
        writeln!(w, ".SH EXAMPLES")?;
        for (what, example) in EXAMPLES {
            writeln!(
                w,
                ".PP\n{}\n.PP\n.RS 4\n\\fB{}\\fR\n.RE",
                roff(what),
                roff(example)
            )?;
        }
        writeln!(
            w,
            ".SH \"SEE ALSO\"\n\\fBsystemctl\\fR(1), \\fBsystemd.service\\fR(5); \
             /usr/share/doc/force\\-https/README.md"
        )?;
    }
    man.render_version_section(w)
}

/// `force-https man [--out-dir DIR]`: the page of force-https(8) on standard output, or, with
/// a directory, that page and one per subcommand (force-https-run.8, ...) written into it.
///
/// # Errors
/// The directory or a page cannot be written.
pub fn man(out_dir: Option<&Path>) -> io::Result<()> {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let Some(dir) = out_dir else {
        return page(cmd, true, &mut io::stdout().lock());
    };
    std::fs::create_dir_all(dir)?;
    let name = |c: &clap::Command| {
        format!(
            "{}.{MAN_SECTION}",
            c.get_display_name().unwrap_or_else(|| c.get_name())
        )
    };
    let mut written = Vec::new();
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let path = dir.join(name(sub));
        page(sub.clone(), false, &mut std::fs::File::create(&path)?)?;
        written.push(path);
    }
    let path = dir.join(name(&cmd));
    page(cmd, true, &mut std::fs::File::create(&path)?)?;
    written.push(path);
    for p in written {
        println!("{}", p.display());
    }
    Ok(())
}

/// `force-https completions SHELL`: the completion script on standard output.
pub fn completions(shell: clap_complete::Shell) {
    clap_complete::generate(
        shell,
        &mut Cli::command(),
        "force-https",
        &mut io::stdout().lock(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_has_every_section() {
        let mut cmd = Cli::command().disable_help_subcommand(true);
        cmd.build();
        let mut out = Vec::new();
        page(cmd, true, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        for want in [
            ".TH force-https 8",
            ".SH NAME",
            ".SH SYNOPSIS",
            ".SH DESCRIPTION",
            ".SH OPTIONS",
            ".SH SUBCOMMANDS",
            ".SH \"EXIT STATUS\"",
            ".SH \"FILES\"",
            ".SH \"ENVIRONMENT\"",
            ".SH EXAMPLES",
            "preload\\-check",
            "/etc/force\\-https/config.toml",
            "RUST_LOG",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
    }

    #[test]
    fn completions_name_every_subcommand() {
        let mut out = Vec::new();
        clap_complete::generate(
            clap_complete::Shell::Bash,
            &mut Cli::command(),
            "force-https",
            &mut out,
        );
        let text = String::from_utf8(out).unwrap();
        for sub in [
            "run",
            "check",
            "enable",
            "disable",
            "list",
            "stats",
            "reload",
            "preload-check",
            "man",
            "completions",
        ] {
            assert!(text.contains(sub), "{sub}");
        }
    }
}
