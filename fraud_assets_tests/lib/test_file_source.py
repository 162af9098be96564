"""File source: the user's CSV/Parquet become the same canonical days, and bad input says where."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import fsspec
import polars as pl
import pytest

from fraud_assets.lib import schema
from fraud_assets.lib.file_source import FileSource, FileSourceConfig, SourceDataError

MAPPING = {
    "TX_DATETIME": "ts",
    "TRANSACTION_ID": "transaction_id",
    "CUSTOMER_ID": "customer_id",
    "TERMINAL_ID": "terminal_id",
    "TX_AMOUNT": "amount",
    "TX_FRAUD": "is_fraud",
}
DAYS = [dt.date(2024, 3, 1), dt.date(2024, 3, 2), dt.date(2024, 3, 3)]
UTC = dt.UTC


def raw_rows() -> pl.DataFrame:
    """3 days x 4 rows in a user's own layout (integer ids, naive timestamps, 0/1 labels)."""
    rows = []
    tid = 100
    for d in DAYS:
        for hour in (23, 0, 12, 12):  # not sorted on purpose; two rows tie on ts
            tid += 1
            rows.append(
                {
                    "TX_DATETIME": dt.datetime(d.year, d.month, d.day, hour, 30),
                    "TRANSACTION_ID": tid,
                    "CUSTOMER_ID": tid % 3,
                    "TERMINAL_ID": f"T{tid % 2}",
                    "TX_AMOUNT": tid / 4,
                    "TX_FRAUD": int(tid % 4 == 0),
                    "EXTRA": "dropped",
                }
            )
    return pl.DataFrame(rows)


def as_csv_text(df: pl.DataFrame) -> pl.DataFrame:
    """What a CSV export looks like: ISO text timestamps, true/false labels in places."""
    return df.with_columns(
        pl.col("TX_DATETIME").dt.strftime("%Y-%m-%d %H:%M:%S"),
        pl.when(pl.col("TRANSACTION_ID") % 2 == 0)
        .then(pl.col("TX_FRAUD").cast(pl.String))
        .otherwise(pl.when(pl.col("TX_FRAUD") == 1).then(pl.lit("TRUE")).otherwise(pl.lit("false")))
        .alias("TX_FRAUD"),
    )


def write_csv_folder(root: Path, df: pl.DataFrame) -> Path:
    """Two CSV files, one nested, so folder resolution must recurse."""
    folder = root / "csv"
    (folder / "sub").mkdir(parents=True)
    text = as_csv_text(df)
    text.head(5).write_csv(folder / "part-0.csv")
    text.slice(5).write_csv(folder / "sub" / "part-1.csv")
    (folder / "_SUCCESS").write_text("")  # non-data files in a folder are ignored
    return folder


def all_days(source: FileSource) -> list[pl.DataFrame]:
    return [source.transactions(d) for d in DAYS]


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


GOOD_HEADER = "TX_DATETIME,TRANSACTION_ID,CUSTOMER_ID,TERMINAL_ID,TX_AMOUNT,TX_FRAUD\n"


# -- mapping and splitting -------------------------------------------------------------------


def test_csv_folder_maps_onto_canonical_days(tmp_path: Path) -> None:
    source = FileSource(FileSourceConfig(str(write_csv_folder(tmp_path, raw_rows())), MAPPING))
    day = source.transactions(DAYS[1])

    assert day.schema == pl.Schema({**schema.REQUIRED_TRANSACTION_COLUMNS, "is_fraud": pl.Int8()})
    # sorted by (ts, transaction_id): the tie at 12:30 is broken by id as text
    assert day["transaction_id"].to_list() == ["106", "107", "108", "105"]
    assert day["ts"].to_list() == [
        dt.datetime(2024, 3, 2, 0, 30, tzinfo=UTC),
        dt.datetime(2024, 3, 2, 12, 30, tzinfo=UTC),
        dt.datetime(2024, 3, 2, 12, 30, tzinfo=UTC),
        dt.datetime(2024, 3, 2, 23, 30, tzinfo=UTC),
    ]
    assert day["customer_id"].to_list() == ["1", "2", "0", "0"]
    assert day["amount"].to_list() == [26.5, 26.75, 27.0, 26.25]
    assert day["is_fraud"].to_list() == [0, 0, 1, 0]
    assert [len(d) for d in all_days(source)] == [4, 4, 4]
    assert source.date_range() == (DAYS[0], DAYS[-1])


def test_csv_glob_and_parquet_give_identical_days(tmp_path: Path) -> None:
    df = raw_rows()
    folder = write_csv_folder(tmp_path, df)
    pq = tmp_path / "pq"
    pq.mkdir()
    df.head(7).write_parquet(pq / "a.parquet")
    df.slice(7).with_columns(pl.col("TX_FRAUD").cast(pl.Boolean)).write_parquet(pq / "b.parquet")

    from_folder = all_days(FileSource(FileSourceConfig(str(folder), MAPPING)))
    from_glob = all_days(FileSource(FileSourceConfig(str(folder / "**" / "*.csv"), MAPPING)))
    from_parquet = all_days(FileSource(FileSourceConfig(str(pq), MAPPING)))

    for a, b, c in zip(from_folder, from_glob, from_parquet, strict=True):
        assert len(a) == 4
        assert a.equals(b)
        assert a.equals(c)


def test_memory_url(tmp_path: Path) -> None:
    bucket = f"memory://fs-test-{uuid.uuid4().hex}"
    fs = fsspec.filesystem("memory")
    text = as_csv_text(raw_rows())
    with fs.open(f"{bucket}/tx/a.csv", "wb") as fh:
        text.head(6).write_csv(fh)
    with fs.open(f"{bucket}/tx/b.parquet", "wb") as fh:
        raw_rows().slice(6).write_parquet(fh)

    remote = FileSource(FileSourceConfig(f"{bucket}/tx/", MAPPING))
    local = FileSource(FileSourceConfig(str(write_csv_folder(tmp_path, raw_rows())), MAPPING))
    for a, b in zip(all_days(remote), all_days(local), strict=True):
        assert len(a) == 4
        assert a.equals(b)
    globbed = FileSource(FileSourceConfig(f"{bucket}/tx/*.csv", MAPPING))
    assert sum(len(d) for d in all_days(globbed)) == 6


def test_optional_columns_only_when_present(tmp_path: Path) -> None:
    df = raw_rows()
    df.write_parquet(tmp_path / "plain.parquet")
    plain = FileSource(FileSourceConfig(str(tmp_path / "plain.parquet"), MAPPING))
    cols = plain.transactions(DAYS[0]).columns
    assert "merchant_category" not in cols
    assert "channel" not in cols

    rich = tmp_path / "rich.parquet"
    df.with_columns(MCC=pl.lit(5411), channel=pl.lit("ecom")).drop("TX_FRAUD").write_parquet(rich)
    mapping = {k: v for k, v in MAPPING.items() if v != "is_fraud"} | {"MCC": "merchant_category"}
    day = FileSource(FileSourceConfig(str(rich), mapping)).transactions(DAYS[0])
    # channel needs no mapping: its source name is already canonical
    assert day.columns == [*schema.REQUIRED_TRANSACTION_COLUMNS, "merchant_category", "channel"]
    assert day["merchant_category"].to_list() == ["5411"] * 4
    assert day["channel"].to_list() == ["ecom"] * 4


def test_empty_day_keeps_schema(tmp_path: Path) -> None:
    raw_rows().write_parquet(tmp_path / "t.parquet")
    source = FileSource(FileSourceConfig(str(tmp_path / "t.parquet"), MAPPING))
    empty = source.transactions(dt.date(2030, 1, 1))
    assert empty.height == 0
    assert empty.schema == source.transactions(DAYS[0]).schema


def test_dataset_is_read_once(tmp_path: Path) -> None:
    folder = write_csv_folder(tmp_path, raw_rows())
    source = FileSource(FileSourceConfig(str(folder), MAPPING))
    assert len(source.transactions(DAYS[0])) == 4
    for f in folder.rglob("*.csv"):
        f.unlink()  # later days must come from the cached frame
    assert len(source.transactions(DAYS[2])) == 4


def test_timestamps_timezones_epoch_and_custom_format(tmp_path: Path) -> None:
    rows = (
        "ts,transaction_id,customer_id,terminal_id,amount\n"
        "2024-03-02T01:00:00+02:00,a,c,t,1\n"  # 23:00 UTC the day before
        "2024-03-02T10:00:00Z,b,c,t,2\n"
        "2024-03-02 11:00:00.250,c,c,t,3\n"
    )
    source = FileSource(FileSourceConfig(str(write(tmp_path / "iso.csv", rows)), {}))
    assert source.transactions(DAYS[0])["transaction_id"].to_list() == ["a"]
    assert source.transactions(DAYS[1])["ts"].to_list() == [
        dt.datetime(2024, 3, 2, 10, tzinfo=UTC),
        dt.datetime(2024, 3, 2, 11, 0, 0, 250000, tzinfo=UTC),
    ]

    epoch = pl.DataFrame(
        {
            "ts": [1709251200 + 3600],  # 2024-03-01 01:00 UTC
            "transaction_id": [1],
            "customer_id": [2],
            "terminal_id": [3],
            "amount": [4],
        }
    )
    epoch.write_parquet(tmp_path / "epoch.parquet")
    epoch.write_csv(tmp_path / "epoch.csv")
    for name in ("epoch.parquet", "epoch.csv"):
        day = FileSource(FileSourceConfig(str(tmp_path / name), {})).transactions(DAYS[0])
        assert day["ts"].to_list() == [dt.datetime(2024, 3, 1, 1, tzinfo=UTC)], name
        assert day["transaction_id"].to_list() == ["1"]

    eu = write(
        tmp_path / "eu.csv",
        "ts,transaction_id,customer_id,terminal_id,amount\n02/03/2024 08:15,x,c,t,1\n",
    )
    custom = FileSource(FileSourceConfig(str(eu), {}, ts_format="%d/%m/%Y %H:%M"))
    assert custom.transactions(DAYS[1])["ts"].to_list() == [
        dt.datetime(2024, 3, 2, 8, 15, tzinfo=UTC)
    ]


def test_parquet_native_types_tz_aware_and_float_ids(tmp_path: Path) -> None:
    """pandas-style exports: ns tz-aware datetimes, ids as floats, labels as floats."""
    pl.DataFrame(
        {
            "ts": [dt.datetime(2024, 3, 1, 0, 30), dt.datetime(2024, 3, 2, 9, 0)],
            "transaction_id": [1.0, 2.0],
            "customer_id": [7.0, 7.5],
            "terminal_id": ["t", "t"],
            "amount": [3, 4],
            "is_fraud": [1.0, 0.0],
        }
    ).with_columns(
        pl.col("ts").dt.replace_time_zone("Europe/Paris").dt.cast_time_unit("ns")
    ).write_parquet(tmp_path / "pandas.parquet")
    source = FileSource(FileSourceConfig(str(tmp_path / "pandas.parquet"), {}))
    # 00:30 Paris is 23:30 UTC the day before
    assert source.transactions(dt.date(2024, 2, 29)).rows() == [
        ("1", dt.datetime(2024, 2, 29, 23, 30, tzinfo=UTC), "7", "t", 3.0, 1)
    ]
    assert source.transactions(DAYS[1]).rows() == [
        ("2", dt.datetime(2024, 3, 2, 8, tzinfo=UTC), "7.5", "t", 4.0, 0)
    ]
    assert source.date_range() == (dt.date(2024, 2, 29), DAYS[1])


# -- labels ------------------------------------------------------------------------------------


def test_labels_from_label_column_arrive_after_delay(tmp_path: Path) -> None:
    raw_rows().write_parquet(tmp_path / "t.parquet")
    source = FileSource(FileSourceConfig(str(tmp_path / "t.parquet"), MAPPING))

    assert source.labels(DAYS[0]).height == 0  # nothing is known on the day it happens
    week_later = source.labels(DAYS[1] + dt.timedelta(days=7))
    assert week_later.schema == pl.Schema(schema.LABEL_COLUMNS)
    assert week_later["transaction_id"].to_list() == ["106", "107", "108", "105"]
    assert week_later["is_fraud"].to_list() == [0, 0, 1, 0]
    assert week_later["known_at"][0] == dt.datetime(2024, 3, 9, 0, 30, tzinfo=UTC)

    fast = FileSource(FileSourceConfig(str(tmp_path / "t.parquet"), MAPPING, label_delay_days=0.5))
    # half a day: 12:30 and 23:30 labels cross midnight and land on the next day
    assert fast.labels(DAYS[0])["transaction_id"].to_list() == ["102"]
    assert fast.labels(DAYS[1])["transaction_id"].to_list() == ["103", "104", "101", "106"]


def test_no_label_column_means_no_labels(tmp_path: Path) -> None:
    raw_rows().drop("TX_FRAUD").write_parquet(tmp_path / "t.parquet")
    mapping = {k: v for k, v in MAPPING.items() if v != "is_fraud"}
    source = FileSource(FileSourceConfig(str(tmp_path / "t.parquet"), mapping))
    assert "is_fraud" not in source.transactions(DAYS[0]).columns
    labels = source.labels(DAYS[1] + dt.timedelta(days=7))
    assert labels.height == 0
    assert labels.schema == pl.Schema(schema.LABEL_COLUMNS)


def test_labels_file_without_known_at_joins_transaction_time(tmp_path: Path) -> None:
    raw_rows().drop("TX_FRAUD").write_parquet(tmp_path / "t.parquet")
    labels = write(
        tmp_path / "labels.csv",
        "TXN,FRAUD\n101,1\n106,0\n999,1\n",  # 999 has no transaction: it cannot be placed in time
    )
    mapping = {k: v for k, v in MAPPING.items() if v != "is_fraud"}
    source = FileSource(
        FileSourceConfig(
            str(tmp_path / "t.parquet"),
            mapping,
            labels_path=str(labels),
            labels_columns={"TXN": "transaction_id", "FRAUD": "is_fraud"},
            label_delay_days=3,
        )
    )
    assert source.labels(dt.date(2024, 3, 4)).rows() == [
        ("101", 1, dt.datetime(2024, 3, 4, 23, 30, tzinfo=UTC))
    ]
    assert source.labels(dt.date(2024, 3, 5)).rows() == [
        ("106", 0, dt.datetime(2024, 3, 5, 0, 30, tzinfo=UTC))
    ]
    total = sum(source.labels(DAYS[0] + dt.timedelta(days=i)).height for i in range(15))
    assert total == 2


def test_labels_file_with_known_at(tmp_path: Path) -> None:
    raw_rows().write_parquet(tmp_path / "t.parquet")
    labels_dir = tmp_path / "labels"
    labels_dir.mkdir()
    write(
        labels_dir / "chargebacks.csv",
        "transaction_id,label,reported\n101,true,2024-03-20T09:00:00Z\n102,0,2024-03-20 08:00:00\n",
    )
    source = FileSource(
        FileSourceConfig(
            str(tmp_path / "t.parquet"),
            MAPPING,
            labels_path=str(labels_dir),
            labels_columns={"label": "is_fraud", "reported": "known_at"},
        )
    )
    # the file's known_at wins over ts + delay (the transactions' own label column is ignored)
    assert source.labels(dt.date(2024, 3, 20)).rows() == [
        ("102", 0, dt.datetime(2024, 3, 20, 8, tzinfo=UTC)),
        ("101", 1, dt.datetime(2024, 3, 20, 9, tzinfo=UTC)),
    ]
    assert source.labels(dt.date(2024, 3, 8)).height == 0


# -- errors ------------------------------------------------------------------------------------


def test_mapped_column_missing_from_file(tmp_path: Path) -> None:
    f = write(
        tmp_path / "renamed.csv", GOOD_HEADER.replace("TX_AMOUNT", "AMT") + "2024-03-01,1,c,t,1,0\n"
    )
    with pytest.raises(SourceDataError) as e:
        FileSource(FileSourceConfig(str(f), MAPPING)).transactions(DAYS[0])
    msg = str(e.value)
    assert "renamed.csv" in msg
    assert "'TX_AMOUNT'" in msg
    assert "'AMT'" in msg  # the columns the file does have


def test_unknown_canonical_name() -> None:
    with pytest.raises(SourceDataError) as e:
        FileSource(FileSourceConfig("unused", {**MAPPING, "X": "amout"}))
    msg = str(e.value)
    assert "'amout'" in msg
    assert "'amount'" in msg and "'merchant_category'" in msg  # the valid names
    with pytest.raises(SourceDataError, match="'label'"):
        FileSource(FileSourceConfig("unused", MAPPING, labels_columns={"y": "label"}))


def test_required_column_missing_after_mapping(tmp_path: Path) -> None:
    f = write(tmp_path / "nocust.csv", "ts,transaction_id,terminal_id,amount\n2024-03-01,1,t,1\n")
    with pytest.raises(SourceDataError) as e:
        FileSource(FileSourceConfig(str(f), {})).transactions(DAYS[0])
    assert "nocust.csv" in str(e.value)
    assert "'customer_id'" in str(e.value)


@pytest.mark.parametrize(
    ("column", "bad", "kind"),
    [
        ("TX_DATETIME", "2024-13-45", "timestamps"),
        ("TX_AMOUNT", "abc", "numbers"),
        ("TX_FRAUD", "maybe", "labels"),
    ],
)
def test_bad_values_name_file_column_and_example(
    tmp_path: Path, column: str, bad: str, kind: str
) -> None:
    good = {
        "TX_DATETIME": "2024-03-01 10:00:00",
        "TRANSACTION_ID": "1",
        "CUSTOMER_ID": "c",
        "TERMINAL_ID": "t",
        "TX_AMOUNT": "1.5",
        "TX_FRAUD": "0",
    }
    row = ",".join(bad if k == column else v for k, v in good.items())
    f = write(tmp_path / "dirty.csv", GOOD_HEADER + ",".join(good.values()) + "\n" + row + "\n")
    with pytest.raises(SourceDataError) as e:
        FileSource(FileSourceConfig(str(f), MAPPING)).transactions(DAYS[0])
    msg = str(e.value)
    assert "dirty.csv" in msg
    assert repr(column) in msg
    assert repr(bad) in msg
    assert kind in msg
    assert "row 2" in msg


def test_bad_label_in_parquet_and_bad_custom_timestamp(tmp_path: Path) -> None:
    raw_rows().with_columns(TX_FRAUD=pl.lit(2)).write_parquet(tmp_path / "labels2.parquet")
    with pytest.raises(
        SourceDataError, match=r"labels2\.parquet.*'TX_FRAUD'.*e\.g\. 2 at data row 1"
    ):
        FileSource(FileSourceConfig(str(tmp_path / "labels2.parquet"), MAPPING)).date_range()

    f = write(
        tmp_path / "us.csv",
        "ts,transaction_id,customer_id,terminal_id,amount\n2024-03-01,x,c,t,1\n",
    )
    with pytest.raises(SourceDataError, match=r"us\.csv.*'ts'.*'%d/%m/%Y'.*'2024-03-01'"):
        FileSource(FileSourceConfig(str(f), {}, ts_format="%d/%m/%Y")).date_range()


def test_empty_required_value(tmp_path: Path) -> None:
    f = write(tmp_path / "gap.csv", GOOD_HEADER + "2024-03-01 10:00:00,1,,t,1,0\n")
    with pytest.raises(SourceDataError, match=r"gap\.csv.*'CUSTOMER_ID'.*empty"):
        FileSource(FileSourceConfig(str(f), MAPPING)).date_range()


def test_no_matching_files(tmp_path: Path) -> None:
    missing = str(tmp_path / "nowhere" / "*.csv")
    with pytest.raises(SourceDataError) as e:
        FileSource(FileSourceConfig(missing, MAPPING)).transactions(DAYS[0])
    assert missing in str(e.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceDataError, match="empty"):
        FileSource(FileSourceConfig(str(tmp_path / "empty"), MAPPING)).date_range()
