"""polyvm.gpu.cli: gpu info / gpu selftest entry points (fake backend and no-backend paths)."""

import json

from polyvm.gpu import cli
from polyvm.gpu import cuda as cuda_backend
from polyvm.gpu import rocm as rocm_backend
from polyvm.gpu.errors import BackendUnavailableError


def _none(monkeypatch):
    def unavailable(index=0, **kw):
        raise BackendUnavailableError("not here")

    monkeypatch.setattr(cuda_backend, "open_driver", unavailable)
    monkeypatch.setattr(rocm_backend, "open_driver", unavailable)


def test_info_json(capsys):
    assert cli.gpu_info_main(["--backend", "fake", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["name"] == "polyvm fake GPU"
    assert info["total_memory"] == 1 << 30
    assert info["pci_bus_id"] is None  # not given by the "driver": never invented


def test_info_table(capsys):
    assert cli.gpu_info_main(["--backend", "fake", "--device", "0"]) == 0
    out = capsys.readouterr().out
    assert "polyvm fake GPU" in out and "unavailable" in out


def test_info_without_backend_is_one_line(monkeypatch, capsys):
    _none(monkeypatch)
    assert cli.gpu_info_main([]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no GPU backend available" in err
    assert "Traceback" not in err


def test_bad_arguments_are_one_line(capsys):
    assert cli.gpu_info_main(["--backend", "opencl"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "invalid choice" in err
    assert cli.gpu_info_main(["--device", "x"]) == 2
    assert cli.gpu_selftest_main(["--n", "0", "--backend", "fake"]) == 2
    assert cli.gpu_info_main(["--backend", "fake", "--device", "5"]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_selftest_fake_passes(capsys):
    assert cli.gpu_selftest_main(["--backend", "fake", "--n", "2000", "--size", "8", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert out.rstrip().endswith("PASS")


def test_selftest_detects_wrong_results(monkeypatch, capsys):
    from polyvm.gpu import fake

    monkeypatch.setitem(fake.BUILTIN_KERNELS, "saxpy", lambda ctx, *a: None)  # a kernel that does nothing
    assert cli.gpu_selftest_main(["--backend", "fake", "--n", "100", "--size", "4"]) == 1
    out = capsys.readouterr().out
    assert "results wrong" in out and out.rstrip().endswith("FAIL")


def test_selftest_without_backend(monkeypatch, capsys):
    _none(monkeypatch)
    assert cli.gpu_selftest_main([]) == 1
    assert "no GPU backend available" in capsys.readouterr().err
