"""Helpers shared by the ESTA tests."""
import torch

from projects.core.engine.hooks.linear_probe_init_hook import split_loader
from projects.core.engine.linear_probe import fit_logistic


def stitch_probe(model, cfg, stitch: int, l2: float = 1e-2):
    """The converged logistic probe (weight, bias) of ``stitch``'s features on the
    train + val splits: what an LP-FT head fitted for that stitch must equal."""
    feats, labels = [], []
    model.eval()
    with torch.no_grad():
        for split in ('train', 'val'):
            for data in split_loader(cfg, split):
                data = model.data_preprocessor(data, False)
                feats.append(model.extract_stitch_feat(data['inputs'], stitch)[-1])
                labels.append(torch.cat([d.gt_label for d in data['data_samples']]))
    return fit_logistic(torch.cat(feats), torch.cat(labels), 10, l2)
