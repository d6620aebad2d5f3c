"""Run every analysis tool's docstring example on tiny inputs and save its output as
JSON (``<script>.json``) plus ``manifest.json`` with the exact command lines.

Run from the root of the checkout to snapshot (the snapshots in this folder were taken
from the unchanged code, commit e4c5a8c, with ``cwd`` = that checkout and this folder's
inputs)::

    python /path/to/tests/data/analysis_snapshots/take_snapshots.py [--only SCRIPT ...]

Every example runs twice; ``unstable`` lists the JSON paths whose values differ between
the two runs (measurements, and values that depend on an unseeded random batch).
Tools that write JSON are snapshotted from that file; tools that only print get their
printed numbers parsed into JSON **as printed** (strings, so the comparison can format a
new value to the same decimals); tools that only draw pictures are recorded with
``"output": null`` and the reason. For the two tools that printed GFLOPs with two
decimals (zero for tiny models), the run is wrapped (``--probe``) to record the
full-precision counts behind the printed numbers as ``macs`` fields.

Placeholders in the commands: ``{snap}`` this folder, ``{out}`` a fresh temporary
folder, ``{img}`` ``data/embedded_seg/img_dir/val/voc_val_000.png``. The seeded inputs
(``*.pth``) are written by ``make_inputs.py``.
"""
import argparse
import json
import os
import os.path as osp
import re
import runpy
import shlex
import subprocess
import sys
import tempfile
import time

HERE = osp.dirname(osp.abspath(__file__))
SEG = 'tests/data/configs/pyra-vit-tiny-p8_fcn_8iter_embedded-seg-64px.py'
ESTA = 'tests/test_esta/configs/esta_tiny_28px.py'
FAST = ['--repeats', '1', '--warmup', '0']

# script -> list of (example name, argv, how the output is read). Placeholders: {snap}
# this folder, {out} a fresh temporary folder, {img} an embedded-seg photo.
EXAMPLES = {
    'benchmark': [
        ('backbone', ['{snap}/configs/tiny_lora.py', '{snap}/configs/tiny_pyra-lora.py',
                      '--batch-size', '2', '--part', 'backbone', *FAST], 'benchmark'),
        ('drop_limit', ['{snap}/configs/tiny_lora.py', '{snap}/configs/tiny_pyra-lora.py',
                        '--batch-size', '2', '--plain-baseline', '--drop-baseline', *FAST],
         'benchmark'),
        ('breakdown', [SEG, '--merge-modes', 'none', 'tome', 'pyra', '--batch-size', '1',
                       '--part', 'model', '--fold-lora', '--breakdown', *FAST,
                       '--cfg-options', 'model.backbone.merge_schedule=[10,6]',
                       'model.backbone.lora_cfg.rank=2'], 'benchmark'),
    ],
    'dyt_benchmark': [
        ('variants', ['{snap}/configs/tiny_dyt.py', '--rate', '0.5', '--batch-size', '4',
                      '--tome', '2', '--dispatch', 'mlp', 'attn', 'attn-mlp', 'layer',
                      *FAST], 'dyt_benchmark'),
    ],
    'dyt_visualize': [
        ('pictures', ['{snap}/configs/tiny_dyt.py', '--checkpoint', '{snap}/tiny_dyt.pth',
                      '--num-images', '8', '--out-dir', '{out}/dyt'], 'dyt_visualize'),
    ],
    'esta_eval_stitches': [
        ('stitches', [ESTA, '{snap}/tiny_esta.pth', '--max-test-images', '24',
                      '--bench-batch', '4', '--bench-repeats', '1', '--out-dir', '{out}/esta'],
         'file:{out}/esta/esta_stitches.json'),
    ],
    'esta_ls_residual': [
        ('residual', [ESTA, '--num-images', '8', '--out', '{out}/ls.json'],
         'file:{out}/ls.json'),
    ],
    'esta_train_memory': [
        ('pst_vs_full', [ESTA, '--batch-size', '4', '--steps', '1'], 'last_json_line'),
    ],
    'faseg_benchmark': [
        # the decoder layer only: the whole-model step of even the tiny FASeg config
        # costs ~25 CPU-seconds here (forward, backward and a counted second pass)
        ('hrca_layer', ['--config',
                        'configs/faseg/faseg_r18-tiny_1xb4-200i_embedded-seg-128x128.py',
                        '--size', '64', '--batch', '1', '--part', 'layer',
                        '--out', '{out}/faseg.json'], 'file:{out}/faseg.json'),
    ],
    'faseg_vis_attention': [
        ('attention', ['--img', '{img}', '--num-queries', '2', '--out', '{out}/attn.png'],
         'none:writes only a PNG (random weights without checkpoints); prints its path'),
    ],
    'spt_benchmark': [
        ('sensitivity_memory', ['{snap}/configs/tiny_spt.py', '--num-samples', '8',
                                '--batch-size', '4', '--repeats', '1', '--steps', '1',
                                '--lora-rank', '2', '--out', '{out}/spt.json'],
         'file:{out}/spt.json'),
    ],
    'spt_plot_allocation': [
        ('allocation', ['{snap}/tiny_spt_allocation.pth', '--out', '{out}/alloc.png'],
         'spt_plot_allocation'),
    ],
    'spvit_benchmark': [
        ('deit_t', ['configs/spvit/archs/spvit_deit-t_official.json', '--arch', 'deit-t',
                    '--img-size', '64', '--batch-size', '2', '--warmup', '0', '--repeats', '1',
                    '--json', '{out}/spvit.json'], 'file:{out}/spvit.json'),
    ],
    'spvit_plot_arch': [
        ('arch', ['configs/spvit/archs/spvit_deit-t_official.json', '--out', '{out}/arch.png'],
         'none:writes only a PNG of the architecture file; prints its path'),
    ],
    'visualize_merging': [
        ('groups', ['--out', '{out}/merging.png', '--merge-schedule', 'high', '--img-size', '224'],
         'visualize_merging'),
    ],
}



def _table_rows(lines, header_start, names):
    """Rows after the header line that starts with ``header_start``: (name, the fields
    after it), up to the first line that starts with none of ``names`` (the longest
    matching name wins: names may end in numbers, e.g. '+ ToMe 2')."""
    start = next((i for i, ln in enumerate(lines) if ln.startswith(header_start)), None)
    out = []
    if start is None:
        return out
    for ln in lines[start + 1:]:
        name = max((n for n in names if ln.startswith(n + ' ')), key=len, default=None)
        if name is None:
            break
        out.append((name, ln[len(name):].split()))
    return out


def parse_benchmark(stdout: str) -> dict:
    lines = stdout.splitlines()
    built = {}
    for ln in lines:
        m = re.match(r'built (.+): (\S+) GFLOPs/img at (\d+)x(\d+)$', ln)
        if m:
            built[m.group(1)] = dict(gflops=m.group(2), hw=[int(m.group(3)), int(m.group(4))])
    has_limit = any(ln.startswith('config') and 'of limit' in ln for ln in lines)
    rows = []
    for name, f in _table_rows(lines, 'config', built):
        row = dict(config=name, gflops=f[2], flops_ratio=f[3].rstrip('x'))
        if has_limit:  # the "of limit" value is timing; which rows have one is not
            row['has_limit'] = len(f) > 4 and f[4].endswith('%')
        rows.append(row)
    out = dict(built=built, rows=rows)
    start = next((i for i, ln in enumerate(lines) if ln.startswith('where the time goes')),
                 None)
    if start is not None:
        out['breakdown'] = [dict(config=name, unmerge_timed=f[2] != '-', gmacs=f[6],
                                 backbone_gmacs=f[7], head_gmacs=f[8])
                            for name, f in _table_rows(lines[start + 1:], 'config', built)]
    return out


def parse_dyt_benchmark(stdout: str) -> dict:
    lines = stdout.splitlines()
    built = {}
    for ln in lines:
        m = re.match(r'built (.+): (\S+) GFLOPs/img executed$', ln)
        if m:
            built[m.group(1)] = dict(gflops=m.group(2))
    rows = [dict(model=name, gflops=f[2], flops_ratio=f[3].rstrip('x'))
            for name, f in _table_rows(lines, 'model', built)]
    return dict(built=built, rows=rows)


def parse_dyt_visualize(stdout: str) -> dict:
    m = re.search(r'activation rates over (\d+) images \(overall ([0-9.]+)%, per layer '
                  r'([0-9, ]+)\)', stdout)
    return dict(num_images=int(m.group(1)), overall_percent=m.group(2),
                layer_percent=[s.strip() for s in m.group(3).split(',')])


def parse_spt_plot_allocation(stdout: str) -> dict:
    shares = {}
    structured = None
    for ln in stdout.splitlines():
        m = re.match(r'\s*(\w+): ((?:\s*[0-9.]+)+)$', ln)
        if m and m.group(1) != 'structured':
            shares[m.group(1)] = m.group(2).split()
        if ln.startswith('structured: '):
            structured = eval(ln[len('structured: '):], {})  # a printed list of str
    return dict(shares_percent=shares, structured=structured)


def parse_visualize_merging(stdout: str) -> dict:
    m = re.search(r'(\d+) groups of (\d+) patches', stdout)
    return dict(groups=int(m.group(1)), patches=int(m.group(2)))


def parse_last_json_line(stdout: str):
    return json.loads(stdout.strip().splitlines()[-1])


def probe(script: str, argv) -> None:
    """Run ``script`` as ``__main__`` with the multiply-add counters it uses wrapped, so
    that the full-precision values behind its printed (2-decimal) GFLOPs are recorded:
    one ``[counter, value]`` per outermost call, in call order, printed last."""
    sys.path.insert(0, os.getcwd())
    import projects.pyra.flops as flops
    from torch.utils.flop_counter import FlopCounterMode
    calls, depth = [], [0]

    def wrap(name, fn):
        def inner(*a, **k):
            depth[0] += 1
            try:
                value = fn(*a, **k)
            finally:
                depth[0] -= 1
            if depth[0] == 0:
                calls.append([name, float(value)])
            return value
        return inner

    for name in ('vit_macs', 'executed_macs'):
        setattr(flops, name, wrap(name, getattr(flops, name)))
    FlopCounterMode.get_total_flops = wrap('FlopCounterMode', FlopCounterMode.get_total_flops)
    sys.argv = [script, *argv]
    try:
        runpy.run_path(script, run_name='__main__')
    finally:
        print('PROBE ' + json.dumps(calls), flush=True)


def attach_benchmark(output: dict, calls) -> None:
    """vit_macs once per built row; FlopCounterMode (2 FLOPs per MAC, one image) three
    times per breakdown row: whole model, backbone, head."""
    rows = [c[1] for c in calls if c[0] == 'vit_macs']
    for name, macs in zip(output['built'], rows, strict=True):
        output['built'][name]['macs'] = macs
    counted = [c[1] / 2 for c in calls if c[0] == 'FlopCounterMode']
    for i, row in enumerate(output.get('breakdown', [])):
        row['macs'], row['backbone_macs'], row['head_macs'] = counted[3 * i:3 * i + 3]


def attach_dyt_benchmark(output: dict, calls) -> None:
    """executed_macs once per built model, in build order."""
    rows = [c[1] for c in calls if c[0] == 'executed_macs']
    for name, macs in zip(output['built'], rows, strict=True):
        output['built'][name]['macs'] = macs


ATTACH = {'benchmark': attach_benchmark, 'dyt_benchmark': attach_dyt_benchmark}


PARSERS = {name[len('parse_'):]: fn for name, fn in globals().items()
           if name.startswith('parse_')}


def placeholders(value, snap: str):
    """``value`` with this folder's absolute path written as ``{snap}`` (the snapshot
    must not depend on where the checkout lives)."""
    if isinstance(value, dict):
        return {k: placeholders(v, snap) for k, v in value.items()}
    if isinstance(value, list):
        return [placeholders(v, snap) for v in value]
    return value.replace(snap, '{snap}') if isinstance(value, str) else value


def run_example(script: str, argv, reader: str, snap: str, img: str):
    with tempfile.TemporaryDirectory() as out:
        args = [a.format(snap=snap, out=out, img=img) for a in argv]
        cmd = [sys.executable, f'tools/analysis/{script}.py', *args]
        if script in ATTACH:  # the same run, with its counters recorded
            cmd = [sys.executable, osp.abspath(__file__), '--probe', *cmd[1:]]
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if proc.returncode:
            raise SystemExit(f'{script} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}')
        probed = [ln for ln in proc.stdout.splitlines() if ln.startswith('PROBE ')]
        stdout = ''.join(ln for ln in proc.stdout.splitlines(True)
                         if not ln.startswith('PROBE '))
        if reader.startswith('file:'):
            with open(reader[5:].format(out=out)) as f:
                output, how = json.load(f), 'the JSON file the tool writes'
        elif reader.startswith('none:'):
            output, how = None, reader[5:]
        else:
            output, how = PARSERS[reader](stdout), 'printed numbers, as printed'
        if script in ATTACH:
            ATTACH[script](output, json.loads(probed[-1][len('PROBE '):]))
            how += ('; "macs" fields: the full-precision values of the printed GFLOPs, '
                    "recorded by wrapping the script's counters (take_snapshots.py --probe)")
    shown = ' '.join(shlex.quote(a) for a in argv)
    return dict(command=f'python tools/analysis/{script}.py {shown}', argv=list(argv),
                read=how, seconds=round(seconds, 1), output=placeholders(output, snap),
                stdout=stdout)


def differing(a, b, path=''):
    """JSON paths ('key/0/key') where two outputs of the same command differ."""
    if isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys():
        return [p for k in a for p in differing(a[k], b[k], f'{path}/{k}' if path else k)]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [p for i, (x, y) in enumerate(zip(a, b))
                for p in differing(x, y, f'{path}/{i}' if path else str(i))]
    return [] if a == b else [path]


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ['--probe']:
        return probe(argv[1], argv[2:])
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--only', nargs='+', choices=sorted(EXAMPLES))
    p.add_argument('--dest', default=HERE, help='where to write the JSON files')
    p.add_argument('--img', default=osp.join(HERE, '..', '..', '..', 'data', 'embedded_seg',
                                             'img_dir', 'val', 'voc_val_000.png'))
    args = p.parse_args(argv)
    img = osp.abspath(args.img)
    for script in args.only or sorted(EXAMPLES):
        examples = {}
        for name, ex_argv, reader in EXAMPLES[script]:
            print(f'{script} {name} ...', flush=True)
            first = run_example(script, ex_argv, reader, HERE, img)
            again = run_example(script, ex_argv, reader, HERE, img)
            # what differs between two runs of the same command: measurements, and
            # values of unseeded random inputs
            first['unstable'] = differing(first['output'], again['output'])
            examples[name] = first
        with open(osp.join(args.dest, f'{script}.json'), 'w') as f:
            json.dump(dict(script=script, examples=examples), f, indent=1)
            f.write('\n')
        write_manifest(args.dest)


def write_manifest(dest: str) -> None:
    """manifest.json: every snapshot's command lines, how its output was read, its
    run time and its unstable paths (rebuilt from the snapshot files)."""
    manifest = {}
    for script in sorted(EXAMPLES):
        path = osp.join(dest, f'{script}.json')
        if osp.isfile(path):
            examples = json.load(open(path))['examples']
            manifest[script] = {n: {k: e[k] for k in ('command', 'read', 'seconds', 'unstable')}
                                for n, e in examples.items()}
    with open(osp.join(dest, 'manifest.json'), 'w') as f:
        json.dump(manifest, f, indent=1)
        f.write('\n')


if __name__ == '__main__':
    main()
