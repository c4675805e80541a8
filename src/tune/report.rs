//! Printing findings: a table for people, JSON for scripts and tests.

use std::io::Write;

use super::plan::CpuPlan;
use super::sys;
use super::{Finding, Status};

/// Widest a value column gets in the table; JSON carries the full text.
const COLUMN_CHARS_MAX: usize = 44;

fn clip(text: &str) -> String {
    if text.chars().count() <= COLUMN_CHARS_MAX {
        return text.to_string();
    }
    let mut clipped: String = text.chars().take(COLUMN_CHARS_MAX - 3).collect();
    clipped.push_str("...");
    clipped
}

/// The findings as a table (tunable, current, recommended, status), then the why and the fix
/// of every finding that is not OK.
pub fn write_table(findings: &[Finding], out: &mut dyn Write) -> std::io::Result<()> {
    let rows: Vec<[String; 4]> = findings
        .iter()
        .map(|f| {
            [
                f.name.clone(),
                clip(&f.current),
                clip(&f.recommended),
                f.status.label().to_string(),
            ]
        })
        .collect();
    let header = ["TUNABLE", "CURRENT", "RECOMMENDED", "STATUS"];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 4]| {
        format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {}",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        )
    };
    writeln!(out, "{}", line(header))?;
    for row in &rows {
        writeln!(out, "{}", line([&row[0], &row[1], &row[2], &row[3]]))?;
    }
    let problems: Vec<&Finding> = findings.iter().filter(|f| f.status != Status::Ok).collect();
    if !problems.is_empty() {
        writeln!(out)?;
    }
    for f in problems {
        let current = f.current.strip_prefix("n/a: ").unwrap_or(&f.current);
        writeln!(out, "{} {}: {current}", f.status.label(), f.name)?;
        writeln!(out, "    why: {}", f.why)?;
        if !f.fix.is_empty() {
            writeln!(out, "    fix: {}", f.fix)?;
        }
    }
    let count = |s: Status| findings.iter().filter(|f| f.status == s).count();
    writeln!(
        out,
        "\n{} OK, {} WARN, {} FAIL, {} N/A",
        count(Status::Ok),
        count(Status::Warn),
        count(Status::Fail),
        count(Status::NotApplicable)
    )
}

/// The CPU plan and the `--cpuset` to start with.
pub fn write_plan(plan: &CpuPlan, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, "\nCPU plan: {}", plan.note)?;
    writeln!(
        out,
        "  start with: sluice start --cpuset {}",
        sys::format_cpu_list(&plan.shard_cpus)
    )
}

/// The findings as a JSON array of `{name, current, recommended, why, status, fix}`.
pub fn write_json(findings: &[Finding], out: &mut dyn Write) -> std::io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, findings)?;
    writeln!(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Finding> {
        vec![
            Finding::new(
                "vm.swappiness",
                "60",
                "<= 1",
                "why",
                Status::Warn,
                "sysctl -w vm.swappiness=1",
            ),
            Finding::new("cpu.clocksource", "tsc", "tsc", "why", Status::Ok, ""),
        ]
    }

    #[test]
    fn table_lists_every_tunable_and_fixes() {
        let mut out = Vec::new();
        write_table(&sample(), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("TUNABLE"), "{text}");
        assert!(text.contains("vm.swappiness    60"), "{text}");
        assert!(text.contains("fix: sysctl -w vm.swappiness=1"), "{text}");
        assert!(text.contains("1 OK, 1 WARN, 0 FAIL, 0 N/A"), "{text}");
    }

    #[test]
    fn json_has_the_documented_fields() {
        let mut out = Vec::new();
        write_json(&sample(), &mut out).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let first = &value[0];
        for field in ["name", "current", "recommended", "why", "status", "fix"] {
            assert!(first.get(field).is_some(), "{field} missing in {first}");
        }
        assert_eq!(first["status"], "WARN");
        assert_eq!(first.as_object().unwrap().len(), 6);
        let back: Vec<Finding> = serde_json::from_slice(&out).unwrap();
        assert_eq!(back, sample());
    }
}
