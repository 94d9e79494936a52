"""`longtail placement evaluate`: JSON output on a small simulated set; malformed input -> exit 2."""
import json

import pytest

from placement_research.evaluate_cli import main
from placement_research.simulator import write_csv
from tests.test_placement_helpers import small_sim

NAMES = {"none", "all", "threshold", "lru", "oracle", "model"}


@pytest.fixture(scope="module")
def sim_csv(tmp_path_factory):
    d = tmp_path_factory.mktemp("sim")
    return write_csv(small_sim(2), d)


def run(capsys, argv):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def args(views, videos, *extra):
    return ["--views", str(views), "--videos", str(videos), "--train-until", "2024-01-16", "--test-days", "7",
            "--max-rows", "20000", *extra]


def test_evaluate_prints_one_json_object_with_all_policies(sim_csv, capsys, tmp_path):
    views, videos = sim_csv
    extra = ["--json"]
    have_mpl = True
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        have_mpl = False
    if have_mpl:
        extra += ["--report", str(tmp_path / "rep")]
    code, out, err = run(capsys, args(views, videos, *extra))
    assert code == 0, err
    res = json.loads(out)
    assert set(res["policies"]) == NAMES
    for r in res["policies"].values():
        assert {"total_cost", "cost_vs_oracle", "cdn_byte_share", "edge_storage_gb_days", "parts"} <= set(r)
        assert set(r["parts"]) == {"cdn_delivery", "cdn_fill", "cdn_storage", "origin_delivery", "qoe_penalty"}
        assert r["cost_vs_oracle"] >= 1.0 - 1e-9
    assert res["model"]["chosen_family"] in ("mlp", "gbm")
    # Both price scenarios, each with every policy; the top level is the default prices.
    assert set(res["scenarios"]) == {"default", "own_origin"}
    assert res["scenarios"]["default"]["policies"] == res["policies"]
    for sc in res["scenarios"].values():
        assert set(sc["policies"]) == NAMES and {"summary", "model", "threshold", "lru", "costs"} <= set(sc)
        assert all(r["cost_vs_oracle"] >= 1.0 - 1e-9 for r in sc["policies"].values())
    own = res["scenarios"]["own_origin"]["costs"]["regions"]["US"]
    assert own["origin_delivery_per_gb"] == 0.0073 and own["cdn_delivery_per_gb"] == 0.005
    if have_mpl:
        for name in ("cost_per_day.png", "cost_vs_oracle.png", "calibration.png", "summary.md"):
            assert (tmp_path / "rep" / name).stat().st_size > 0


def test_costs_file_is_used(sim_csv, capsys, tmp_path):
    views, videos = sim_csv
    c = tmp_path / "c.toml"
    c.write_text("[default]\ncdn_delivery_per_gb = 1.0\n[regions.US]\ncdn_delivery_per_gb = 1.0\n"
                 "[regions.GB]\ncdn_delivery_per_gb = 1.0\n[regions.DE]\ncdn_delivery_per_gb = 1.0\n"
                 "[regions.JP]\ncdn_delivery_per_gb = 1.0\n[regions.BR]\ncdn_delivery_per_gb = 1.0\n"
                 "[regions.IN]\ncdn_delivery_per_gb = 1.0\n")
    code, out, err = run(capsys, args(views, videos, "--json", "--costs", str(c), "--scenario", f"dear={c}"))
    assert code == 0, err
    res = json.loads(out)
    assert set(res["scenarios"]) == {"dear"}  # --scenario replaces the default scenarios
    # A CDN dearer than origin: the oracle and the model keep everything at origin.
    assert res["policies"]["oracle"]["cdn_byte_share"] == 0
    assert res["policies"]["model"]["cdn_byte_share"] == 0


GOOD_VIDEOS = "video_id,upload_date,language,category,channel_id,size_bytes\na,,,,,\nb,2024-01-01,en,10,c1,1000\n"


def good_views(n_days=10):
    rows = ["date,video_id,region,views"]
    for d in range(1, n_days + 1):
        rows += [f"2024-01-{d:02d},a,US,{d * 3}", f"2024-01-{d:02d},b,GB,5"]
    return "\n".join(rows) + "\n"


@pytest.mark.parametrize("mutate,needle", [
    (lambda t: t.replace("date,video_id,region,views", "date,video_id,views"), "lacks column"),
    (lambda t: t.replace("2024-01-03,a", "2024-13-03,a", 1), "bad date"),
    (lambda t: t.replace("2024-01-03,a", "03/01/2024,a", 1), "bad date"),
    (lambda t: t.replace(",a,US,9", ",a,US,-9"), "non-negative"),
    (lambda t: t.replace(",a,US,9", ",a,US,nine"), "not a number"),
    (lambda t: t.replace(",a,US,9", ",a,US,"), "not a number"),
    (lambda t: "", "empty"),
])
def test_malformed_views_exit_2_with_one_line(capsys, tmp_path, mutate, needle):
    v = tmp_path / "views.csv"
    v.write_text(mutate(good_views()))
    m = tmp_path / "videos.csv"
    m.write_text(GOOD_VIDEOS)
    code, out, err = run(capsys, ["--views", str(v), "--videos", str(m), "--train-until", "2024-01-07",
                                  "--test-days", "2", "--json"])
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and needle in err and "Traceback" not in err


@pytest.mark.parametrize("extra,needle", [
    (["--train-until", "2024-01-09", "--test-days", "5"], "do not fit"),
    (["--train-until", "yesterday", "--test-days", "1"], "bad date"),
    (["--train-until", "2024-01-07"], "required"),
])
def test_bad_arguments_exit_2(capsys, tmp_path, extra, needle):
    v = tmp_path / "views.csv"
    v.write_text(good_views())
    m = tmp_path / "videos.csv"
    m.write_text(GOOD_VIDEOS)
    code, out, err = run(capsys, ["--views", str(v), "--videos", str(m), *extra])
    assert code == 2 and needle in err and err.count("\n") == 1


def test_bad_scenario_exit_2(capsys, tmp_path):
    v = tmp_path / "views.csv"
    v.write_text(good_views())
    m = tmp_path / "videos.csv"
    m.write_text(GOOD_VIDEOS)
    base = ["--views", str(v), "--videos", str(m), "--train-until", "2024-01-07", "--test-days", "1"]
    for bad, needle in ((["--scenario", "nofile"], "NAME=FILE"), (["--scenario", f"x={tmp_path / 'no.toml'}"], "cannot read")):
        code, out, err = run(capsys, base + bad)
        assert code == 2 and needle in err and err.count("\n") == 1


def test_missing_file_exit_2(capsys, tmp_path):
    code, out, err = run(capsys, ["--views", str(tmp_path / "nope.csv"), "--videos", str(tmp_path / "nope2.csv"),
                                  "--train-until", "2024-01-07", "--test-days", "1"])
    assert code == 2 and "cannot read" in err
