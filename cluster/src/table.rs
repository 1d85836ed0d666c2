//! The walkthrough's last step: istioctl's proxy-status table against a live
//! snapshot of the remote cluster.
use std::collections::BTreeSet;

/// One parsed row: NAME and ISTIOD cells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub name: String,
    pub istiod: String,
}

/// Parses istioctl's tabwriter table by the header's column offsets (cells such as
/// `NOT SENT` contain a space).
pub fn parse(table: &str) -> Result<Vec<Row>, String> {
    let mut lines = table.lines().filter(|l| !l.trim().is_empty());
    let header = lines.next().ok_or("istioctl printed no table")?;
    let starts: Vec<(usize, &str)> = header
        .char_indices()
        .filter(|(i, c)| !c.is_whitespace() && (*i == 0 || header[..*i].ends_with(' ')))
        .map(|(i, _)| (i, header[i..].split_whitespace().next().unwrap_or("")))
        .collect();
    let col = |name: &str| {
        starts
            .iter()
            .position(|(_, h)| *h == name)
            .ok_or(format!("no {name} column in the header {header:?}"))
    };
    let (name_col, istiod_col) = (col("NAME")?, col("ISTIOD")?);
    let cell = |line: &str, k: usize| -> String {
        let from = starts[k].0.min(line.len());
        let to = starts
            .get(k + 1)
            .map(|(i, _)| (*i).min(line.len()))
            .unwrap_or(line.len());
        line.get(from..to).unwrap_or("").trim().to_string()
    };
    Ok(lines
        .map(|l| Row {
            name: cell(l, name_col),
            istiod: cell(l, istiod_col),
        })
        .collect())
}

/// Every ISTIOD cell `<external>`, and the rows exactly the expected `pod.namespace` names.
pub fn compare(rows: &[Row], expected: &BTreeSet<String>) -> Result<(), String> {
    let mut problems = Vec::new();
    for r in rows.iter().filter(|r| r.istiod != "<external>") {
        problems.push(format!(
            "{}: ISTIOD is {:?}, not <external>",
            r.name, r.istiod
        ));
    }
    let got: BTreeSet<String> = rows.iter().map(|r| r.name.clone()).collect();
    for missing in expected.difference(&got) {
        problems.push(format!("{missing}: has a sidecar but is not in the table"));
    }
    for extra in got.difference(expected) {
        problems.push(format!(
            "{extra}: in the table but no such pod with a sidecar"
        ));
    }
    if rows.len() != got.len() {
        problems.push(format!(
            "{} rows for {} names: duplicates",
            rows.len(),
            got.len()
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The blog's table (seeds/blog-istioctl-remote-cluster.md).
    const BLOG: &str = "\
NAME                                                      CDS        LDS        EDS        RDS        ISTIOD         VERSION
helloworld-v1-776f57d5f6-tmpkd.sample                     SYNCED     SYNCED     SYNCED     SYNCED     <external>     1.12.1
istio-ingressgateway-75bfd5668f-lggn4.external-istiod     SYNCED     SYNCED     SYNCED     SYNCED     <external>     1.12.1
sleep-557747455f-v627d.sample                             NOT SENT   SYNCED     SYNCED     SYNCED     <external>     1.12.1
";

    fn expected() -> BTreeSet<String> {
        [
            "helloworld-v1-776f57d5f6-tmpkd.sample",
            "istio-ingressgateway-75bfd5668f-lggn4.external-istiod",
            "sleep-557747455f-v627d.sample",
        ]
        .map(String::from)
        .into()
    }

    #[test]
    fn the_blogs_table_passes() {
        let rows = parse(BLOG).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(
            rows[2],
            Row {
                name: "sleep-557747455f-v627d.sample".into(),
                istiod: "<external>".into()
            }
        );
        compare(&rows, &expected()).unwrap();
    }

    #[test]
    fn a_replica_name_or_a_missing_row_fails() {
        let named = BLOG.replacen("<external>", "istiod-666f  ", 1);
        let e = compare(&parse(&named).unwrap(), &expected()).unwrap_err();
        assert!(
            e.contains("helloworld-v1-776f57d5f6-tmpkd.sample: ISTIOD is \"istiod-666f\""),
            "{e}"
        );
        let short: String = BLOG.lines().take(3).map(|l| format!("{l}\n")).collect();
        let e = compare(&parse(&short).unwrap(), &expected()).unwrap_err();
        assert!(
            e.contains("sleep-557747455f-v627d.sample: has a sidecar but is not in the table"),
            "{e}"
        );
        assert!(parse("").is_err());
        assert!(parse("NAME VERSION\n").is_err());
    }
}
