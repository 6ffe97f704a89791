"""The ``mobilectl`` command line: thin typer commands over the library.

Results go to stdout (rich tables, or JSON with ``--json``); logs, progress and errors
go to stderr. Bad input is one line on stderr and exit code 2, never a traceback.
The layers below (numpy, TensorFlow) are imported inside the commands that need them,
each import saying why, so ``--help`` and ``--version`` are instant.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

from mobilectl.core.errors import UserError, VerificationFailed
from mobilectl.core.tfenv import import_quietly, log_path, log_size
from mobilectl.core.types import (
    DEFAULT_VAL_SPLIT, Activations, CalibrationMethod, Format, IoType, Layout, Precision, QuantFormat, parse,
)
from mobilectl.core.version import __version__
from mobilectl.modelfile import check_file, is_model_file, parse_shape
from mobilectl.progress import stage_progress
from mobilectl.render import (
    build_table, devices_table, eval_table, export_table, prune_table, qat_table, layers_table, models_table, per_layer_table,
    mixed_table, profile_table, sensitivity_table, summary_table, calibrate_table, predict_table,
    predict_summary_table,
)

app = typer.Typer(
    name="mobilectl", no_args_is_help=True, add_completion=False,
    pretty_exceptions_enable=False,
    help="Efficient CNNs from a Keras definition to a measured model on a phone.",
)
# Tables fit the terminal (or $COLUMNS); piped output without $COLUMNS (CI logs, files)
# gets 200 columns.
out = Console(soft_wrap=True,
              width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 200)
err = Console(stderr=True, log_path=False)

WidthOpt = Annotated[Optional[float], typer.Option("--width-multiplier", "-w",
                     help="Width multiplier alpha (thins every layer).")]
ResolutionOpt = Annotated[Optional[int], typer.Option("--resolution", "-r",
                          help="Input height and width in pixels.")]
GroupsOpt = Annotated[Optional[int], typer.Option("--groups", help="Groups of pointwise convolutions.")]
ClassesOpt = Annotated[Optional[int], typer.Option("--num-classes", help="Classifier outputs.")]
TopOpt = Annotated[Optional[bool], typer.Option("--include-top/--no-include-top", metavar="",
                   help="Keep the pooling + classifier head.")]
KnobOpt = Annotated[Optional[list[str]], typer.Option(
    "--knob", metavar="NAME=VALUE",
    help="Any other knob of the model, e.g. cell_repeats=6 (repeatable; see 'mobilectl models').")]
JsonOpt = Annotated[bool, typer.Option("--json", metavar="", help="Print JSON on stdout for scripts.")]
# the options of the commands that fine-tune on labelled data (prune, qat)
TunedModelArg = Annotated[str, typer.Argument(metavar="MODEL_OR_PATH",
                          help="Registry name (with --weights) or a .keras file.")]
TrainDataOpt = Annotated[str, typer.Option("--data", help="A folder with one sub-folder per "
                         "class, or a .npz with x and y arrays.")]
WeightsFileOpt = Annotated[Optional[str], typer.Option("--weights",
                           help="Local .weights.h5 file for a registry model.")]
ClassNamesOpt = Annotated[Optional[str], typer.Option("--labels", help="Class names, one per "
                          "line, in the model's output order.")]
ValOpt = Annotated[Optional[str], typer.Option("--val", help="A separate validation set.")]
ValSplitOpt = Annotated[float, typer.Option("--val-split", metavar="FRACTION",
                        help="Seeded, stratified validation share of --data.")]
MinRepsOpt = Annotated[Optional[int], typer.Option("--min-reps", help="Repetitions (fresh "
                       "benchmark processes) at least (default: 3; compare: 5).")]
MaxRepsOpt = Annotated[Optional[int], typer.Option("--max-reps", help="Repetitions at most "
                       "(default: --min-reps, or 10 with --target-ci).")]
TargetCiOpt = Annotated[Optional[float], typer.Option("--target-ci", metavar="PCT", help="Repeat "
                        "until the median's confidence interval is narrower than PCT percent "
                        "of it.")]
ConfidenceOpt = Annotated[float, typer.Option("--confidence", help="Of the intervals.")]
MaxTempOpt = Annotated[Optional[float], typer.Option("--max-temp-c", help="Before each run, "
                       "wait until the hottest thermal zone is below this (default: the "
                       "profile's).")]
CoolTimeoutOpt = Annotated[Optional[float], typer.Option("--cool-timeout", metavar="SECONDS",
                           help="Give up waiting to cool after this long.")]


def _version(value: bool) -> None:
    if value:
        out.print(f"mobilectl {__version__}")
        raise typer.Exit()


VERBOSE: list[bool] = [False]  # set by --verbose for this process's run


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", metavar="", callback=_version, is_eager=True,
                                          help="Show the version and exit.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", metavar="", help="Also show what TensorFlow, "
                                          "tf2onnx, onnxruntime and LiteRT printed "
                                          "(kept in a log file otherwise).")] = False,
) -> None:
    """Efficient CNNs from a Keras definition to a measured model on a phone."""
    VERBOSE[0] = verbose


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True) + "\n")


def _quiet_tensorflow() -> None:
    """Import TensorFlow now, its native start-up lines silenced (before any Keras use)."""
    import_quietly()


# typer vendors click; its UsageError is the parent of the public BadParameter.
_ClickUsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


@app.command("models")
def models_cmd(
    device: Annotated[Optional[str], typer.Option("--device", help="Sort by latency predicted "
                      "on this device (its kernel table: 'mobilectl device calibrate').")] = None,
    precision: Annotated[str, typer.Option("--precision", help="With --device: fp32 or int8.")] = "fp32",
    as_json: JsonOpt = False,
) -> None:
    """List the model zoo: name, variants, input size, paper MACs and params."""
    _quiet_tensorflow()
    from mobilectl.info import model_rows  # lazy: imports Keras and the zoo

    rows = model_rows()
    if device is not None:
        rows = _by_predicted(rows, device, precision)
    if as_json:
        _print_json([{k: v for k, v in row.items() if k != "variants_text"} for row in rows])
    else:
        out.print(models_table(rows, width=out.width))


def _by_predicted(rows: list[dict[str, Any]], device: str, precision: str) -> list[dict[str, Any]]:
    """The zoo's rows with their predicted latency on ``device``, fastest first."""
    from device_profiles import kernel_table  # lazy: pulls numpy
    from mobilectl.predict import check_precision, zoo_latencies  # lazy: pulls numpy

    chosen = check_precision(precision)
    kernel_table.find(device)  # no table: say how to make one, before any conversion
    with stage_progress(err, f"predict the zoo on {device}") as progress:
        found = zoo_latencies(device, precision=chosen, progress=progress)
    for row in rows:
        p = found[row["name"]]
        row["predicted_ms"], row["predicted_lower_bound"] = p.total_ms, p.lower_bound
        row["predicted_device"], row["predicted_precision"] = device, str(chosen)
    return sorted(rows, key=lambda r: r["predicted_ms"])


@app.command("info")
def info_cmd(
    model: Annotated[str, typer.Argument(metavar="MODEL_OR_FILE",
                     help="Registry name (see 'mobilectl models') or a .keras, .tflite or "
                          ".onnx file.")],
    width_multiplier: WidthOpt = None, resolution: ResolutionOpt = None,
    groups: GroupsOpt = None, num_classes: ClassesOpt = None, include_top: TopOpt = None,
    knob: KnobOpt = None,
    input_shape: Annotated[Optional[str], typer.Option("--input-shape", metavar="1,H,W,C",
                           help="Fix a file's dynamic input dimensions (batch first).")] = None,
    per_layer: Annotated[bool, typer.Option("--per-layer", metavar="", help="Show every layer.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Report the FLOPs proxy of a zoo model or a model file: MACs, params, memory
    traffic, peak memory."""
    given = _knobs(width_multiplier=width_multiplier, resolution=resolution, groups=groups,
                   num_classes=num_classes, include_top=include_top, **_extra_knobs(knob))
    shape = parse_shape(input_shape)
    if is_model_file(model):
        info = _file_info(model, given, shape, per_layer=per_layer)
    else:
        if shape is not None:
            raise UserError("--input-shape applies to model files; a registry model takes "
                            "--resolution")
        with err.status(f"building {model} and counting its layers"):
            _quiet_tensorflow()
            from mobilectl.info import model_info  # lazy: imports Keras and the zoo

            info = model_info(model, per_layer=per_layer, **given)
    if as_json:
        _print_json(info)
        return
    out.print(summary_table(info))
    if per_layer:
        out.print(layers_table(info["layers"], width=out.width))


def _file_info(target: str, given: dict[str, Any], shape: tuple[int, ...] | None, *,
               per_layer: bool) -> dict[str, Any]:
    if given:
        raise UserError(f"--{next(iter(given)).replace('_', '-')} applies to registry models; "
                        f"{target} is a file (use --input-shape for its input)")
    check_file(target, input_shape=shape)
    with err.status(f"reading {target} and counting its ops"):
        _quiet_tensorflow()
        from mobilectl.info import file_info  # lazy: imports Keras, LiteRT's schema, onnx

        return file_info(target, per_layer=per_layer, input_shape=shape)


PrecisionFlags = tuple[bool, bool, bool]


def _precision(int8: bool, fp16: bool, dynamic: bool) -> Precision:
    chosen = [p for p, on in ((Precision.INT8, int8), (Precision.FP16, fp16),
                              (Precision.DYNAMIC, dynamic)) if on]
    if len(chosen) > 1:
        raise UserError(f"--{chosen[0]} and --{chosen[1]} exclude each other: pick one "
                        "precision (--int8, --fp16, --dynamic; none means fp32)")
    return chosen[0] if chosen else Precision.FP32


def _knobs(**given: Any) -> dict[str, Any]:
    return {k: v for k, v in given.items() if v is not None}


def _extra_knobs(pairs: Optional[list[str]]) -> dict[str, Any]:
    """``--knob name=value`` pairs; values read as int, float, true/false, else text
    (the model's knob then checks the kind and the range)."""
    knobs: dict[str, Any] = {}
    for pair in pairs or ():
        name, sep, text = pair.partition("=")
        if not sep or not name.strip() or not text.strip():
            raise UserError(f"--knob {pair!r} is not allowed: NAME=VALUE, e.g. cell_repeats=6")
        knobs[name.strip().replace("-", "_")] = _knob_value(text.strip())
    return knobs


def _knob_value(text: str) -> Any:
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _target(device: Optional[str]) -> str:
    """The CPU architecture of a device profile ("" = this machine)."""
    if device is None:
        return ""
    from device_profiles.profile import load_profile  # lazy: reads the TOML profiles

    return load_profile(device).arch


def _read_labels(path: Optional[str]) -> tuple[str, ...]:
    if path is None:
        return ()
    try:
        lines = open(path, encoding="utf-8").read().splitlines()  # noqa: SIM115
    except OSError as exc:
        raise UserError(f"--labels {path}: cannot read it ({exc.strerror})") from None
    return tuple(line.strip() for line in lines if line.strip())


@app.command("export")
def export_cmd(
    target: Annotated[str, typer.Argument(metavar="MODEL_OR_PATH",
                      help="Registry name (see 'mobilectl models') or a .keras file.")],
    width_multiplier: WidthOpt = None, resolution: ResolutionOpt = None,
    groups: GroupsOpt = None, num_classes: ClassesOpt = None, knob: KnobOpt = None,
    weights: Annotated[Optional[str], typer.Option("--weights",
                       help="Local .weights.h5 file for a registry model.")] = None,
    int8: Annotated[bool, typer.Option("--int8", metavar="", help="Full-integer int8 (calibrated).")] = False,
    fp16: Annotated[bool, typer.Option("--fp16", metavar="", help="float16 weights.")] = False,
    dynamic: Annotated[bool, typer.Option("--dynamic", metavar="", help="Dynamic-range int8 weights.")] = False,
    formats: Annotated[Optional[str], typer.Option("--format", help="tflite, onnx or both "
                       "(default both; tflite with --mixed).")] = None,
    calib: Annotated[Optional[str], typer.Option("--calib", metavar="DIR_OR_NPY",
                     help="Images folder or .npy/.npz (default: bundled photos).")] = None,
    calib_samples: Annotated[int, typer.Option("--calib-samples", help="Calibration samples.")] = 64,
    io_type: Annotated[str, typer.Option("--io", help="int8 TFLite I/O: float, int8, uint8.")] = "float",
    device: Annotated[Optional[str], typer.Option("--device", help="Target device profile: picks "
                      "int8 ONNX's activation type (default: this machine).")] = None,
    activations: Annotated[Optional[str], typer.Option("--activations", help="int8 ONNX "
                           "activations: uint8 (x86) or int8 (ARM); default from --device.")] = None,
    calib_method: Annotated[str, typer.Option("--calib-method", help="int8 ONNX ranges: minmax, "
                            "entropy, percentile.")] = "minmax",
    quant_format: Annotated[Optional[str], typer.Option("--quant-format", help="int8 ONNX "
                            "format: qdq, qoperator; default from --device.")] = None,
    symmetric: Annotated[Optional[bool], typer.Option("--symmetric/--asymmetric", help="int8 "
                         "ONNX activations symmetric or not; default from --device.")] = None,
    fuse_hard_swish: Annotated[Optional[bool], typer.Option(
        "--fuse-hard-swish/--plain-hard-swish", help="ONNX for onnxruntime's CPU EP "
        "(HardSwish fused, channel shuffles as Gather) or for mobile EPs (Add/Clip/Mul, "
        "Reshape/Transpose shuffles); default from --device (fused on x86).")] = None,
    layout: Annotated[str, typer.Option("--layout", help="ONNX input layout: nchw, nhwc.")] = "nchw",
    keep_float: Annotated[Optional[list[str]], typer.Option("--keep-float", metavar="LAYER",
                          help="Leave this layer in float (repeatable).")] = None,
    sparse: Annotated[bool, typer.Option("--sparse", metavar="", help="TFLite: weights that "
                      "are mostly zero (mobilectl prune --method magnitude) in the sparse "
                      "encoding; says whether XNNPACK would run them sparse on --device.")] = False,
    labels: Annotated[Optional[str], typer.Option("--labels", help="Labels file, one per line.")] = None,
    mixed: Annotated[bool, typer.Option("--mixed", metavar="", help="A precision per layer "
                     "(w4a8, int8, a16w8, float) chosen by measurement within --budget; "
                     "TFLite (ONNX: int8 or float per layer).")] = False,
    budget: Annotated[Optional[str], typer.Option("--budget", help="--mixed: accuracy=-1pt, "
                      "size=2MB or latency=5ms (latency on --device, default host).")] = None,
    minimise: Annotated[Optional[str], typer.Option("--minimise", help="--mixed with an "
                        "accuracy budget: size or latency (default).")] = None,
    data: Annotated[Optional[str], typer.Option("--data", help="--mixed: labelled data for "
                    "top-1 (default: agreement with the float model on held-out inputs).")] = None,
    out_dir: Annotated[str, typer.Option("--out", help="Output folder.")] = "artifacts",
    min_cosine: Annotated[float, typer.Option(help="Quantized: minimum cosine.")] = 0.98,
    min_sqnr: Annotated[float, typer.Option(help="Quantized: minimum SQNR in dB.")] = 12.0,
    min_top1: Annotated[float, typer.Option(help="Quantized: minimum top-1 agreement.")] = 0.8,
    max_abs_error: Annotated[float, typer.Option(help="fp32: maximum abs error.")] = 1e-3,
    max_abs_error_fp16: Annotated[float, typer.Option(help="fp16: maximum abs error.")] = 5e-2,
    seed: Annotated[int, typer.Option(help="Seed of initialisation and crops.")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Export MODEL_OR_PATH to TFLite and/or ONNX, verified, with a manifest."""
    from exporter import formats as format_table  # lazy: pulls numpy
    from exporter.options import ExportOptions, Thresholds

    options = ExportOptions(
        precision=_precision(int8, fp16, dynamic),
        formats=tuple(parse(Format, f.strip(), flag="--format")
                      for f in (formats or "tflite,onnx").split(",") if f.strip()),
        calib=calib, calib_samples=calib_samples, io_type=parse(IoType, io_type, flag="--io"),
        layout=parse(Layout, layout, flag="--layout"), keep_float=tuple(keep_float or ()),
        labels=_read_labels(labels), seed=seed, target=_target(device),
        activations=None if activations is None else parse(Activations, activations,
                                                           flag="--activations"),
        calib_method=parse(CalibrationMethod, calib_method, flag="--calib-method"),
        quant_format=None if quant_format is None else parse(QuantFormat, quant_format,
                                                             flag="--quant-format"),
        symmetric=symmetric, fuse_hard_activations=fuse_hard_swish, sparse=sparse,
        thresholds=Thresholds(max_abs_error=max_abs_error, max_abs_error_fp16=max_abs_error_fp16,
                              min_cosine=min_cosine, min_sqnr_db=min_sqnr, min_top1=min_top1))
    knobs = _knobs(width_multiplier=width_multiplier, resolution=resolution, groups=groups,
                   num_classes=num_classes, **_extra_knobs(knob))
    if mixed or budget or minimise or data:
        if formats is None:
            options = replace(options, formats=(Format.TFLITE,))
        _mixed_export(target, options, knobs=knobs, weights=weights, budget=budget,
                      minimise=minimise, data=data, labels=labels, device=device,
                      out_dir=out_dir, as_json=as_json, mixed=mixed)
        return
    format_table.check(options)
    _quiet_tensorflow()
    from exporter.pipeline import export  # lazy: imports TensorFlow/Keras

    with stage_progress(err, target) as progress:
        try:
            result = export(target, knobs=knobs, weights=weights, options=options,
                            out=Path(out_dir), progress=progress)
        except VerificationFailed as exc:
            raise _failed(f"verification failed: {exc}") from None
    for note in result.warnings:
        err.print(f"warning: {note}", markup=False, highlight=False)
    lints = _sparse_lints(result, arch=options.target) if sparse else {}
    for path, found in lints.items():
        _note(f"{path}: {found.line()}")
    if as_json:
        _print_json({"out": str(result.out), "artifacts": [
            {**e.to_dict(), **({"sparse_lint": lints[e.path].as_dict()} if e.path in lints else {})}
            for e in result.entries]})
    else:
        out.print(export_table(result.entries, str(result.out), width=out.width))
    _note(f"wrote {len(result.entries)} artifact(s) and manifest.json to {result.out}; next: "
          f"mobilectl profile {result.out / 'manifest.json'}")


def _mixed_export(target: str, options: Any, *, knobs: dict[str, Any], weights: Optional[str],
                  budget: Optional[str], minimise: Optional[str], data: Optional[str],
                  labels: Optional[str], device: Optional[str], out_dir: str, as_json: bool,
                  mixed: bool) -> None:
    """``export --mixed --budget``: search, export the chosen recipe, print the trace."""
    from mobilectl.mixed import Axis, Budget, BudgetNotMet, MixedOptions, mixed_export  # lazy: the stack below loads when a search runs

    if not mixed:
        raise UserError("--budget, --minimise and --data apply with --mixed")
    if budget is None:
        raise UserError("--mixed needs --budget: accuracy=-1pt, size=2MB or latency=5ms")
    if options.precision not in (Precision.FP32, Precision.INT8):
        raise UserError(f"--mixed chooses a precision per layer; it does not take "
                        f"--{options.precision}")
    if minimise not in (None, Axis.SIZE, Axis.LATENCY):
        raise UserError(f"--minimise {minimise!r} is not allowed: size or latency")
    choice = MixedOptions(Budget.parse(budget), None if minimise is None else Axis(minimise),
                          device or "host")
    source = None
    if data is not None:
        from mobilectl.evaluate import DataSource  # lazy: pulls numpy

        source = DataSource(data, labels=labels)
    _quiet_tensorflow()
    with stage_progress(err, f"mixed {target}") as progress:
        try:
            result = mixed_export(target, mixed=choice, options=options, out=Path(out_dir),
                                  knobs=knobs, weights=weights, data=source, progress=progress)
        except BudgetNotMet as exc:
            raise _failed(str(exc)) from None
        except VerificationFailed as exc:
            raise _failed(f"verification failed: {exc}") from None
    if as_json:
        _print_json(result.as_dict())
    else:
        out.print(mixed_table(result.as_dict(), width=out.width))
    _note(f"wrote {', '.join(result.written)}, manifest.json and mixed.json to {out_dir}")


def _sparse_lints(result: Any, *, arch: str) -> dict[str, Any]:
    """The XNNPACK sparse-inference lint of every sparse TFLite artifact, by file name."""
    from device_profiles.sparse_lint import lint  # lazy: reads flatbuffers

    return {e.path: lint((result.out / e.path).read_bytes(), arch=arch)
            for e in result.entries if e.sparse}


@app.command("quant-report")
def quant_report_cmd(
    target: Annotated[str, typer.Argument(metavar="MODEL_OR_PATH",
                      help="Registry name or a .keras file.")],
    width_multiplier: WidthOpt = None, resolution: ResolutionOpt = None,
    groups: GroupsOpt = None, num_classes: ClassesOpt = None, knob: KnobOpt = None,
    weights: Annotated[Optional[str], typer.Option("--weights",
                       help="Local .weights.h5 file for a registry model.")] = None,
    calib: Annotated[Optional[str], typer.Option("--calib", metavar="DIR_OR_NPY",
                     help="Images folder or .npy/.npz (default: bundled photos).")] = None,
    calib_samples: Annotated[int, typer.Option("--calib-samples", help="Calibration samples.")] = 32,
    top: Annotated[int, typer.Option("--top", min=1, help="Rows to show.")] = 15,
    seed: Annotated[int, typer.Option(help="Seed of initialisation and crops.")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Rank layers by the error they add under int8 (TFLite), and suggest --keep-float."""
    from exporter.options import ExportOptions  # lazy: pulls numpy
    from quant.calibration import check_source

    options = ExportOptions(precision=Precision.INT8, calib=calib, calib_samples=calib_samples,
                            seed=seed, held_out=1)
    options.validate()
    check_source(calib)
    knobs = _knobs(width_multiplier=width_multiplier, resolution=resolution, groups=groups,
                   num_classes=num_classes, **_extra_knobs(knob))
    _quiet_tensorflow()
    from exporter.pipeline import build_or_load, calibrate  # lazy: imports TensorFlow/Keras
    from quant.sensitivity import layer_sensitivity, suggest_keep_float, verdict

    with stage_progress(err, target) as progress:
        progress(f"build {target}")
        source = build_or_load(target, knobs=knobs, weights=weights, seed=seed)
        progress("calibrate")
        calib_set = calibrate(source, options)
        progress("quantize and compare every op with float")
        rows = layer_sensitivity(source.model, calib_set.calibration)
    suggestion = suggest_keep_float(rows)
    if as_json:
        _print_json({"model": source.name, "variant": source.variant,
                     "calibration": calib_set.describe().as_dict(),
                     "suggest_keep_float": suggestion,
                     "layers": [r.as_dict() for r in rows]})
        return
    out.print(sensitivity_table(rows[:top], f"{source.name} int8 sensitivity",
                                width=out.width))
    out.print(verdict(rows, suggestion), markup=False, highlight=False)


@app.command("profile")
def profile_cmd(
    targets: Annotated[Optional[list[str]], typer.Argument(metavar="[MODEL_OR_ARTIFACT]...",
                       help="Registry names, .tflite/.onnx files or a manifest.json "
                            "(none: the zoo's default variants).")] = None,
    device: Annotated[str, typer.Option("--device", help="Profile name or a .toml file.")] = "host",
    serial: Annotated[Optional[list[str]], typer.Option("--serial", help="adb serial (repeatable: "
                      "several devices in parallel).")] = None,
    threads: Annotated[Optional[int], typer.Option("--threads", min=1)] = None,
    runs: Annotated[Optional[int], typer.Option("--runs", min=1)] = None,
    warmup: Annotated[Optional[int], typer.Option("--warmup", min=0)] = None,
    delegate: Annotated[str, typer.Option("--delegate", help="cpu, gpu or nnapi.")] = "cpu",
    precision: Annotated[str, typer.Option("--precision", help="For registry names: int8 or fp32.")] = "fp32",
    out_dir: Annotated[str, typer.Option("--out", help="Report folder (and exported artifacts).")] = "profile",
    binary: Annotated[Optional[str], typer.Option("--benchmark-binary",
                      help="TFLite benchmark_model for the device's ABI.")] = None,
    adb: Annotated[Optional[str], typer.Option("--adb", help="Path of the adb client.")] = None,
    adb_server: Annotated[Optional[str], typer.Option("--adb-server", metavar="HOST:PORT",
                          help="Remote adb server (device farm).")] = None,
    timeout: Annotated[Optional[float], typer.Option("--timeout", help="Seconds per benchmark run.")] = None,
    input_shape: Annotated[Optional[list[str]], typer.Option(
        "--input-shape", metavar="[NAME:]1,3,H,W",
        help="Shape of a dynamic input (repeatable, NAME: for several inputs).")] = None,
    per_layer: Annotated[bool, typer.Option("--per-layer", help="Also time every op and "
                         "report it per Keras layer, with MACs, GMAC/s and why it is slow.")] = False,
    int8: Annotated[bool, typer.Option("--int8", help="Registry names in int8 and fp32, "
                    "compared per layer: int8 vs float time and each layer's int8 error "
                    "(implies --per-layer).")] = False,
    min_reps: MinRepsOpt = None, max_reps: MaxRepsOpt = None, target_ci: TargetCiOpt = None,
    confidence: ConfidenceOpt = 0.95, max_temp_c: MaxTempOpt = None,
    cool_timeout: CoolTimeoutOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Measure latency on a device and report it next to MACs (rank correlation, plot)."""
    from device_profiles.harness import InputShape, ProfileOptions  # lazy: pulls numpy
    from device_profiles.stats import RepeatPolicy
    from mobilectl.profiling import profile

    repeat = RepeatPolicy.of_flags(min_reps=min_reps, max_reps=max_reps,
                                   target_ci_pct=target_ci, confidence=confidence)

    options = ProfileOptions(device=device, serials=tuple(serial or ()), threads=threads,
                             runs=runs, warmup=warmup, delegate=delegate,
                             out=Path(out_dir), benchmark_binary=binary, adb=adb,
                             adb_server=adb_server, timeout_s=timeout,
                             input_shapes=tuple(InputShape.parse(s) for s in input_shape or ()),
                             per_layer=per_layer or int8, repeat=repeat,
                             max_temp_c=max_temp_c, cool_timeout_s=cool_timeout)
    _quiet_tensorflow()
    with stage_progress(err, f"profile on {device}") as progress:
        result = profile(targets or [], options, precision=precision, versus_float=int8,
                         progress=progress)
    if as_json:
        sys.stdout.write(json.dumps(result.summary, indent=2, sort_keys=True, default=str) + "\n")
    else:
        out.print(profile_table(result.summary, width=out.width))
        for measurement in result.summary["measurements"]:
            if measurement["per_layer"]:
                out.print(per_layer_table(measurement, width=out.width))
        out.print(f"report: {result.summary['report']}"
                  + (f", {result.summary['html']}" if result.summary.get("html") else ""))
    for measurement in result.summary["measurements"]:
        if measurement.get("sparse_lint"):
            _note(f"{measurement['artifact']}: {measurement['sparse_lint']['line']}")
    for note in result.warnings:
        err.print(f"warning: {note}", markup=False, highlight=False, soft_wrap=True)
    if result.failures:
        err.print(f"error: {len(result.failures)} failure(s); first: "
                  f"{_one_line(result.failures[0])}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2)


@app.command("compare")
def compare_cmd(
    a: Annotated[str, typer.Argument(metavar="A", help="Registry name, .tflite/.onnx file or "
                 "manifest.json.")],
    b: Annotated[str, typer.Argument(metavar="B", help="The same kinds of target as A.")],
    device: Annotated[str, typer.Option("--device", help="Profile name or a .toml file.")] = "host",
    serial: Annotated[Optional[list[str]], typer.Option("--serial", help="adb serial.")] = None,
    threads: Annotated[Optional[int], typer.Option("--threads", min=1)] = None,
    runs: Annotated[Optional[int], typer.Option("--runs", min=1)] = None,
    warmup: Annotated[Optional[int], typer.Option("--warmup", min=0)] = None,
    precision: Annotated[str, typer.Option("--precision", help="For registry names: int8 or fp32.")] = "fp32",
    threshold: Annotated[float, typer.Option("--threshold", metavar="PCT", help="Call a "
                         "difference only when the whole interval is beyond PCT percent.")] = 1.0,
    min_reps: MinRepsOpt = None, max_reps: MaxRepsOpt = None, target_ci: TargetCiOpt = None,
    confidence: ConfidenceOpt = 0.95, max_temp_c: MaxTempOpt = None,
    cool_timeout: CoolTimeoutOpt = None,
    out_dir: Annotated[str, typer.Option("--out", help="Folder of compare.json (and exported "
                       "artifacts).")] = "compare",
    binary: Annotated[Optional[str], typer.Option("--benchmark-binary",
                      help="TFLite benchmark_model for the device's ABI.")] = None,
    adb_server: Annotated[Optional[str], typer.Option("--adb-server", metavar="HOST:PORT")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Measure A and B interleaved; the ratio of medians with its interval and a verdict."""
    from device_profiles.harness import ProfileOptions  # lazy: pulls numpy
    from device_profiles.stats import COMPARE_REPS, RepeatPolicy
    from mobilectl.compare import compare

    repeat = RepeatPolicy.of_flags(min_reps=min_reps, max_reps=max_reps,
                                   target_ci_pct=target_ci, confidence=confidence,
                                   default_reps=COMPARE_REPS)
    options = ProfileOptions(device=device, serials=tuple(serial or ()), threads=threads,
                             runs=runs, warmup=warmup, out=Path(out_dir), benchmark_binary=binary,
                             adb_server=adb_server, repeat=repeat, max_temp_c=max_temp_c,
                             cool_timeout_s=cool_timeout)
    _quiet_tensorflow()
    with stage_progress(err, f"compare on {device}") as progress:
        summary = compare(a, b, options, precision=precision, threshold_pct=threshold,
                          progress=progress)
    if as_json:
        _print_json(summary)
        return
    out.print(profile_table(summary, width=out.width))
    for verdict in summary["verdicts"]:
        out.print(verdict["sentence"], markup=False, highlight=False, soft_wrap=True)


@app.command("diff")
def diff_cmd(
    old: Annotated[str, typer.Argument(metavar="OLD", help="manifest.json, profile.json, "
                   "latency.json or a folder with one.")],
    new: Annotated[str, typer.Argument(metavar="NEW", help="The same kinds of file as OLD.")],
    as_json: JsonOpt = False,
) -> None:
    """What changed between two builds or profiles: bytes, ops, tools, calibration data,
    device state, latency."""
    from mobilectl.diff import diff, lines, load_side  # lazy: pulls numpy

    report = diff(load_side(old), load_side(new))
    if as_json:
        _print_json(report)
        return
    for line in lines(report):
        out.print(line, markup=False, highlight=False, soft_wrap=True)


@app.command("eval")
def eval_cmd(
    target: Annotated[str, typer.Argument(metavar="ARTIFACT_OR_MANIFEST", help="A .tflite/"
                      ".onnx file beside its manifest, a manifest.json or its folder.")],
    data: Annotated[str, typer.Option("--data", help="A folder with one sub-folder per class, "
                    "or a .npz with x and y arrays.")],
    labels: Annotated[Optional[str], typer.Option("--labels", help="Class names, one per "
                      "line, in the model's output order (default: sorted folder names).")] = None,
    val: Annotated[Optional[str], typer.Option("--val", help="A separate validation set "
                   "(same forms as --data): evaluated instead of --data.")] = None,
    val_split: Annotated[Optional[float], typer.Option("--val-split", metavar="FRACTION",
                         help="Evaluate the seeded, stratified validation part of --data "
                         "(e.g. 0.2).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the --val-split.")] = 0,
    keras: Annotated[Optional[str], typer.Option("--keras", help="The float model to compare "
                     "with (default: the one the manifest names, when its weights exist).")] = None,
    record: Annotated[bool, typer.Option("--record/--no-record", help="Write the results "
                      "into the manifest (when the target is one).")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Top-1/top-5 accuracy of each artifact as it runs, next to its Keras float model."""
    _quiet_tensorflow()
    from mobilectl.evaluate import DataSource, evaluate  # lazy: pulls TensorFlow and LiteRT

    source = DataSource(data, labels=labels, val=val, val_split=val_split, seed=seed)
    with stage_progress(err, "eval") as progress:
        results = evaluate(target, source, keras_path=keras, record=record, progress=progress)
    rows = [r.as_dict() for r in results]
    if as_json:
        _print_json({"results": rows})
        return
    out.print(eval_table(rows, width=out.width))


@app.command("prune")
def prune_cmd(
    target: TunedModelArg,
    data: TrainDataOpt,
    method: Annotated[str, typer.Option("--method", help="l1 or fpgm: remove whole filters "
                      "(ranked by weight norm or distance to the geometric median); magnitude: "
                      "zero single weights (sparse, same shape).")] = "l1",
    ratio: Annotated[Optional[float], typer.Option("--ratio", help="l1, fpgm: share of each "
                     "layer's filters removed, between 0 and 1 (default 0.5).")] = None,
    sparsity: Annotated[Optional[float], typer.Option("--sparsity", help="magnitude: share "
                        "of each kernel's weights set to zero, between 0 and 1.")] = None,
    epochs: Annotated[int, typer.Option("--epochs", help="Fine-tuning epochs.")] = 3,
    lr: Annotated[float, typer.Option("--lr", help="Fine-tuning learning rate (Adam).")] = 1e-3,
    divisor: Annotated[int, typer.Option("--divisor", help="Kept filters rounded up to a "
                       "multiple of this.")] = 8,
    width_multiplier: WidthOpt = None, resolution: ResolutionOpt = None,
    groups: GroupsOpt = None, num_classes: ClassesOpt = None, knob: KnobOpt = None,
    weights: WeightsFileOpt = None, labels: ClassNamesOpt = None, val: ValOpt = None,
    val_split: ValSplitOpt = DEFAULT_VAL_SPLIT,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    out_file: Annotated[str, typer.Option("--out", help="The pruned .keras file.")] = "pruned.keras",
    as_json: JsonOpt = False,
) -> None:
    """Remove filters (structured pruning), fine-tune, and report MACs, params, accuracy."""
    _quiet_tensorflow()
    from mobilectl.prune import PruneOptions, prune  # lazy: pulls TensorFlow
    from quant.pruning import Method

    options = PruneOptions(parse(Method, method, flag="--method"), ratio, epochs, lr,
                           divisor=divisor, seed=seed, sparsity=sparsity)
    knobs = _knobs(width_multiplier=width_multiplier, resolution=resolution, groups=groups,
                   num_classes=num_classes, **_extra_knobs(knob))
    with stage_progress(err, f"prune {target}") as progress:
        report = prune(target, data=data, out=Path(out_file), options=options, knobs=knobs,
                       weights=weights, labels=labels, val=val, val_split=val_split,
                       progress=progress)
    if as_json:
        _print_json(report.as_dict())
        return
    out.print(prune_table(report.as_dict(), width=out.width))
    _note(f"wrote {out_file}; next: mobilectl export {out_file} "
          + ("--int8" if options.method.structured else "--format tflite --sparse"))


@app.command("qat")
def qat_cmd(
    target: TunedModelArg,
    data: TrainDataOpt,
    weight_bits: Annotated[int, typer.Option("--weight-bits", help="8, 4 or 2 (ternary): "
                           "per-channel weights; activations are always 8-bit.")] = 8,
    epochs: Annotated[int, typer.Option("--epochs", help="Fine-tuning epochs.")] = 3,
    lr: Annotated[Optional[float], typer.Option("--lr", help="Fine-tuning learning rate "
                  "(Adam); default 1e-4 for 8-bit weights, 5e-4 for 4- and 2-bit.")] = None,
    width_multiplier: WidthOpt = None, resolution: ResolutionOpt = None,
    groups: GroupsOpt = None, num_classes: ClassesOpt = None, knob: KnobOpt = None,
    weights: WeightsFileOpt = None, labels: ClassNamesOpt = None, val: ValOpt = None,
    val_split: ValSplitOpt = DEFAULT_VAL_SPLIT,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    out_dir: Annotated[str, typer.Option("--out", help="Folder for the QAT .keras model, its "
                       "int8 artifacts and their manifest.")] = "qat",
    as_json: JsonOpt = False,
) -> None:
    """Quantization-aware fine-tuning; int8 TFLite and ONNX without calibration data."""
    _quiet_tensorflow()
    from mobilectl.qat import QatOptions, qat  # lazy: pulls TensorFlow

    options = QatOptions(weight_bits, epochs, lr, seed=seed)
    knobs = _knobs(width_multiplier=width_multiplier, resolution=resolution, groups=groups,
                   num_classes=num_classes, **_extra_knobs(knob))
    with stage_progress(err, f"qat {target}") as progress:
        try:
            report = qat(target, data=data, out=Path(out_dir), options=options, knobs=knobs,
                         weights=weights, labels=labels, val=val, val_split=val_split,
                         progress=progress)
        except VerificationFailed as exc:
            raise _failed(f"verification failed: {exc}") from None
    if as_json:
        _print_json(report.as_dict())
        return
    out.print(qat_table(report.as_dict(), width=out.width))
    _note(f"wrote {out_dir}; next: mobilectl profile {out_dir} --device host")


@app.command("devices")
def devices_cmd(
    adb: Annotated[Optional[str], typer.Option("--adb", help="Path of the adb client.")] = None,
    adb_server: Annotated[Optional[str], typer.Option("--adb-server", metavar="HOST:PORT")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List adb devices: state, model, ABI and the profile each matches."""
    from device_profiles.adb import AdbClient  # lazy: pulls numpy
    from device_profiles.harness import device_rows

    rows = device_rows(AdbClient(adb=adb, server=adb_server))
    if as_json:
        _print_json(rows)
    else:
        out.print(devices_table(rows, width=out.width))


device_app = typer.Typer(help="Prepare devices for profiling.", no_args_is_help=True)
app.add_typer(device_app, name="device")


@device_app.command("setup")
def device_setup_cmd(
    abi: Annotated[str, typer.Option("--abi", help="arm64-v8a, armeabi-v7a, x86_64 or x86.")] = "arm64-v8a",
    from_path: Annotated[Optional[str], typer.Option("--from", help="Install a local "
                         "benchmark_model instead of downloading.")] = None,
    sha256: Annotated[Optional[str], typer.Option("--sha256", help="Expected checksum.")] = None,
) -> None:
    """Put TFLite's benchmark_model for ABI in the user cache (download or --from PATH)."""
    from device_profiles.setup import install_benchmark_binary  # lazy: pulls numpy

    path, digest = install_benchmark_binary(abi, source=from_path, sha256=sha256)
    out.print(f"{path} sha256={digest}")


@device_app.command("calibrate")
def device_calibrate_cmd(
    device: Annotated[str, typer.Option("--device", help="Profile name or a .toml file.")] = "host",
    budget_min: Annotated[float, typer.Option("--budget-min", help="Stop after the batch that "
                          "would pass this many minutes (a rerun resumes).")] = 20.0,
    threads: Annotated[Optional[int], typer.Option("--threads", help="Default: the profile's.")] = None,
    serial: Annotated[Optional[str], typer.Option("--serial", help="adb serial.")] = None,
    binary: Annotated[Optional[str], typer.Option("--benchmark-binary",
                      help="TFLite benchmark_model for the device's ABI.")] = None,
    adb: Annotated[Optional[str], typer.Option("--adb", help="Path of the adb client.")] = None,
    adb_server: Annotated[Optional[str], typer.Option("--adb-server", metavar="HOST:PORT")] = None,
    restart: Annotated[bool, typer.Option("--restart", metavar="", help="Discard the saved "
                       "table and start afresh.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Time the kernels mobile CNNs are made of on a device, for 'mobilectl predict'."""
    from device_profiles.profile import load_profile  # lazy: reads the TOML profiles
    from mobilectl.calibrate import CalibrateOptions

    options = CalibrateOptions(device=device, budget_min=budget_min, threads=threads,
                               serials=(serial,) if serial else (), benchmark_binary=binary,
                               adb=adb, adb_server=adb_server, restart=restart)
    options.check()
    profile = load_profile(device)
    _quiet_tensorflow()
    from mobilectl.calibrate import calibrate, report  # lazy: imports TensorFlow

    with stage_progress(err, f"calibrate {profile.name}") as progress:
        result = calibrate(profile, options, progress)
    data = report(result)
    if as_json:
        _print_json(data)
    else:
        out.print(calibrate_table(data, width=out.width))
    for note in result.warnings + result.failures:
        err.print(f"warning: {note}", markup=False, highlight=False, soft_wrap=True)
    _note(f"kernel table: {result.path} ({data['blocks']} blocks"
          + (f"; {result.remaining} left: run again to resume" if result.remaining else "; complete")
          + f"); next: mobilectl predict MODEL --device {profile.name}")


@app.command("predict")
def predict_cmd(
    targets: Annotated[list[str], typer.Argument(metavar="MODEL_OR_FILE...",
                       help="Registry names, .keras or .tflite files.")],
    device: Annotated[str, typer.Option("--device", help="Profile name or a .toml file.")] = "host",
    precision: Annotated[str, typer.Option("--precision", help="For registry names and .keras "
                         "files: fp32 or int8.")] = "fp32",
    width_multiplier: WidthOpt = None, resolution: ResolutionOpt = None,
    groups: GroupsOpt = None, num_classes: ClassesOpt = None, knob: KnobOpt = None,
    measure: Annotated[bool, typer.Option("--measure", metavar="", help="Also measure on the "
                       "device and report the prediction's error.")] = False,
    per_layer: Annotated[bool, typer.Option("--per-layer", metavar="", help="Show every "
                         "layer (default: the heaviest 12).")] = False,
    serial: Annotated[Optional[str], typer.Option("--serial", help="adb serial (--measure).")] = None,
    binary: Annotated[Optional[str], typer.Option("--benchmark-binary")] = None,
    adb_server: Annotated[Optional[str], typer.Option("--adb-server", metavar="HOST:PORT")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Predict latency on a device from its kernel table, per layer and in total."""
    from mobilectl.predict import PredictOptions, check_precision  # lazy: pulls numpy

    knobs = _knobs(width_multiplier=width_multiplier, resolution=resolution, groups=groups,
                   num_classes=num_classes, **_extra_knobs(knob))
    for target in targets:
        if is_model_file(target):
            check_file(target)
    options = PredictOptions(device=device, precision=check_precision(precision), knobs=knobs,
                             measure=measure, benchmark_binary=binary,
                             serials=(serial,) if serial else (), adb_server=adb_server)
    _quiet_tensorflow()
    from mobilectl.predict import predict  # lazy: imports TensorFlow

    with stage_progress(err, f"predict on {device}") as progress:
        found = predict(targets, options, progress)
    reports = [p.as_dict() for p in found]
    if as_json:
        _print_json({"device": device, "models": reports})
    else:
        for data in reports:
            out.print(predict_table(data, width=out.width, rows=None if per_layer else 12))
        out.print(predict_summary_table(reports, width=out.width, device=device))
    for note in dict.fromkeys(w for p in found for w in p.warnings):
        err.print(f"warning: {note}", markup=False, highlight=False, soft_wrap=True)


@app.command("build")
def build_cmd(
    spec_file: Annotated[Optional[str], typer.Argument(metavar="[SPEC]",
                         help="mobilectl.toml or pyproject.toml (default: found here).")] = None,
    out_dir: Annotated[str, typer.Option("--out", help="Output folder.")] = "dist",
    cache_dir: Annotated[str, typer.Option("--cache", help="Build cache folder.")] = ".mobilectl-cache",
    only: Annotated[Optional[list[str]], typer.Option("--only", metavar="NAME",
                    help="Build only this artifact (repeatable; a CI matrix slice).")] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="Parallel processes.")] = 1,
    keep_going: Annotated[bool, typer.Option("--keep-going", metavar="", help="Build the rest after a failure.")] = False,
    merge_dirs: Annotated[Optional[list[str]], typer.Option("--merge", metavar="DIR",
                          help="Join the outputs of several builds into --out.")] = None,
    serial: Annotated[Optional[list[str]], typer.Option("--serial", help="adb serial for budgets.")] = None,
    binary: Annotated[Optional[str], typer.Option("--benchmark-binary")] = None,
    baseline: Annotated[Optional[str], typer.Option("--baseline", metavar="DIR_OR_FILE",
                        help="An earlier build's --out folder (or its latency.json): fail on "
                             "a significant slowdown beyond max_regression_pct.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Build every artifact of a spec: incremental, reproducible, and a CI gate."""
    from device_profiles.harness import ProfileOptions  # lazy: pulls numpy
    from mobilectl.build import build, merge
    from mobilectl.spec import find_spec, load_spec

    if merge_dirs:
        entries = merge([Path(d) for d in merge_dirs], Path(out_dir))
        out.print(f"merged {len(entries)} artifact(s) into {out_dir}")
        return
    spec = load_spec(find_spec(spec_file))
    measure_with = ProfileOptions(serials=tuple(serial or ()), benchmark_binary=binary)
    with stage_progress(err, f"build {spec.source}") as progress:
        results = build(spec, out=Path(out_dir), cache=Path(cache_dir), only=tuple(only or ()),
                        jobs=jobs, keep_going=keep_going, measure_with=measure_with,
                        baseline=baseline, progress=progress)
    rows = [{"artifact": r.job.label, "status": r.status, "error": r.error,
             "seconds": round(r.seconds, 2), "files": [e.path for e in r.entries],
             "worker": r.worker, "peak_rss_mb": None if r.peak_rss_mb is None
             else round(r.peak_rss_mb, 1),
             "budgets": [c.as_dict() for c in r.budget_checks]} for r in results]
    if as_json:
        _print_json({"out": out_dir, "summary": str(Path(out_dir) / "summary.md"), "jobs": rows})
    else:
        out.print(build_table(rows, width=out.width))
    _note(f"artifacts, manifest.json and summary.md in {out_dir}; next: mobilectl profile "
          f"{Path(out_dir) / 'manifest.json'}")
    failed = [r for r in rows if r["status"] == "failed"]
    if failed:
        err.print(f"error: {len(failed)} artifact(s) failed; first: {failed[0]['artifact']}: "
                  f"{_one_line(failed[0]['error'] or '')}", markup=False, highlight=False,
                  soft_wrap=True)
        raise typer.Exit(1)


def _note(message: str) -> None:
    """A hint on stderr (where things went, what to run next)."""
    err.print(message, markup=False, highlight=False, soft_wrap=True)


def _failed(message: str) -> typer.Exit:
    """Print ``error: MESSAGE`` on one line; the exit (code 1) to raise: the work ran
    and missed (verification, a budget), which is not bad input (code 2)."""
    err.print(f"error: {_one_line(message)}", markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(1)


def _one_line(message: str) -> str:
    return " ".join(message.split())


def _bad_value(exc: Any, argv: list[str]) -> str:
    """`` (got 'abc')`` for a usage error about an option's value, found in ``argv``."""
    opts = getattr(getattr(exc, "param", None), "opts", None) or []
    for i, word in enumerate(argv):
        for opt in opts:
            if word == opt and i + 1 < len(argv):
                return f" (got {argv[i + 1]!r})"
            if word.startswith(f"{opt}="):
                return f" (got {word.split('=', 1)[1]!r})"
    return ""


def _show_log(start: int) -> None:
    """--verbose: what third-party tools printed during this run, from the log file."""
    path = log_path()
    if not VERBOSE[0] or not path.is_file():
        return
    with path.open(encoding="utf-8", errors="replace") as handle:
        handle.seek(start)
        added = handle.read()
    err.print(f"third-party output of this run (kept in {path}):", markup=False,
              highlight=False, soft_wrap=True)
    sys.stderr.write(added if added.endswith("\n") or not added else added + "\n")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the CLI, mapping user errors to exit code 2."""
    args = list(sys.argv[1:] if argv is None else argv)
    command = typer.main.get_command(app)
    start = log_size()
    try:
        code = command.main(args=args, prog_name="mobilectl", standalone_mode=False)
    except UserError as exc:
        _show_log(start)
        err.print(f"error: {_one_line(str(exc))}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except _ClickUsageError as exc:
        err.print(f"error: {_one_line(exc.format_message())}{_bad_value(exc, args)}",
                  markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except typer.Abort:
        err.print("aborted", markup=False)
        sys.exit(130)
    _show_log(start)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
