//! Seeding stock levels from a CSV export, as ERPs and POS systems write them.

use super::{stock, StateError, StateStore};

/// What an import did: how many SKUs were set, and the rows it refused (line, reason).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportReport {
    pub set: usize,
    pub refused: Vec<(usize, String)>,
}

/// Sets `stock.on_hand` for every row of `csv`, reading the SKU and the quantity from the
/// named columns. A bad row (missing SKU, a quantity that is not a whole number >= 0) is
/// reported and skipped; the other rows are still imported.
pub fn import_stock_csv(
    store: &dyn StateStore,
    csv_bytes: &[u8],
    delimiter: u8,
    sku_column: &str,
    qty_column: &str,
) -> Result<ImportReport, StateError> {
    let (levels, refused) = read_stock_csv(csv_bytes, delimiter, sku_column, qty_column)?;
    for (sku, n) in &levels {
        stock::set(store, sku, *n)?;
    }
    Ok(ImportReport {
        set: levels.len(),
        refused,
    })
}

/// The `(sku, on_hand)` of the good rows, and the rows refused: `(line, reason)`.
pub type StockRows = (Vec<(String, i64)>, Vec<(usize, String)>);

/// The `(sku, on_hand)` of every good row of `csv`, and the rows refused (line, reason): what
/// [`import_stock_csv`] sets, for a caller that sets them elsewhere (a running engine).
pub fn read_stock_csv(
    csv_bytes: &[u8],
    delimiter: u8,
    sku_column: &str,
    qty_column: &str,
) -> Result<StockRows, StateError> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .from_reader(csv_bytes);
    let headers = reader
        .headers()
        .map_err(|e| StateError::Invalid(format!("not valid CSV: {e}")))?
        .clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim() == name)
            .ok_or_else(|| {
                let have: Vec<&str> = headers.iter().collect();
                StateError::Invalid(format!(
                    "no column `{name}` in the header; columns: {}",
                    have.join(", ")
                ))
            })
    };
    let (sku_at, qty_at) = (column(sku_column)?, column(qty_column)?);
    let mut levels = Vec::new();
    let mut refused = Vec::new();
    for (i, row) in reader.records().enumerate() {
        let line = i + 2;
        let row = match row {
            Ok(r) => r,
            Err(e) => {
                refused.push((line, format!("not valid CSV: {e}")));
                continue;
            }
        };
        let sku = row.get(sku_at).unwrap_or_default().trim();
        let qty = row.get(qty_at).unwrap_or_default().trim();
        if sku.is_empty() {
            refused.push((line, "no SKU".into()));
            continue;
        }
        match qty.parse::<i64>() {
            Ok(n) if n >= 0 => levels.push((sku.to_string(), n)),
            _ => refused.push((
                line,
                format!("{sku}: quantity {qty:?} is not a whole number >= 0"),
            )),
        }
    }
    Ok((levels, refused))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::MemoryStore;

    #[test]
    fn imports_good_rows_and_reports_bad_ones() {
        let store = MemoryStore::default();
        let csv =
            b"ItemNo;Description;OnHand\nA-1;Chair;5\n;Nothing;3\nB-2;Table;n/a\nC-3;Lamp;0\n";
        let report = import_stock_csv(&store, csv, b';', "ItemNo", "OnHand").unwrap();
        assert_eq!(report.set, 2);
        assert_eq!(report.refused.len(), 2);
        assert_eq!(report.refused[1].0, 4);
        assert_eq!(stock::available(&store, "A-1").unwrap(), 5);
        let err = import_stock_csv(&store, csv, b';', "Sku", "OnHand").unwrap_err();
        assert!(err.to_string().contains("no column `Sku`"), "{err}");
    }
}
