-- Version 8: every metric series also in step order, as aggregates only (src/store/units.rs),
-- so a chart by step costs what its buckets cost, whether or not the steps arrived in order.
-- The Rust step (store::units::build_all) builds them from each series' points.
ALTER TABLE series ADD COLUMN open_unit BLOB;
CREATE TABLE series_units (
    id   INTEGER PRIMARY KEY,
    data BLOB NOT NULL
);
CREATE TRIGGER series_units_gone AFTER DELETE ON series BEGIN
    DELETE FROM series_units WHERE id BETWEEN old.id * 4294967296 AND old.id * 4294967296 + 4294967295;
END;
