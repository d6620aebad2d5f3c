"""SPViT's gradient damping against gradients worked out by hand, per sampled op.

With hard samples h and straight-through samples g_i = h_i + s_i - s_i.detach()
(s = sigmoid(theta), ds/dtheta = s (1 - s) = s'), the ordered gates are c1 = g1,
c2 = g1 g2, c3 = g1 g2 g3, and the loss is L = a c1 + b c2 + c c3. The official code
(``single_path_init``) detaches c1 once c2 is on and c2 once c3 is on, after the
product; the 'sample' ablation detaches g1, g2 before it.
"""
import pytest
import torch

from projects.spvit import gates

A, B, C = 0.3, -0.7, 1.1
# sampled op -> hard samples (h1, h2, h3)
SAMPLES = {'skip': (0., 1., 1.), 'conv1x1': (1., 0., 1.), 'conv3x3': (1., 1., 0.),
           'msa': (1., 1., 1.)}
# d L / d theta_i divided by s'_i, by hand from the formulas above
BY_HAND = {
    'product': {'skip': (A + B + C, 0., 0.), 'conv1x1': (A, B + C, 0.),
                'conv3x3': (B, B, C), 'msa': (C, C, C)},
    'sample': {'skip': (A + B + C, 0., 0.), 'conv1x1': (A, B + C, 0.),
               'conv3x3': (0., B, C), 'msa': (0., 0., C)},
    'none': {'skip': (A + B + C, 0., 0.), 'conv1x1': (A, B + C, 0.),
             'conv3x3': (A + B, B, C), 'msa': (A + B + C, B + C, C)},
}


@pytest.mark.parametrize('mode', list(BY_HAND))
@pytest.mark.parametrize('op', list(SAMPLES))
def test_logit_gradients_equal_the_hand_computation(monkeypatch, mode, op):
    hard = torch.tensor(SAMPLES[op])

    def fixed_samples(theta, tau, training):
        soft = torch.sigmoid(theta)
        return hard - soft.detach() + soft

    monkeypatch.setattr(gates, 'sample_gates', fixed_samples)
    theta = torch.tensor([0.4, -0.2, 1.3], requires_grad=True)
    c = gates.ordered_attention_gates(theta, 1.0, True, damp=mode)
    assert c.detach().tolist() == torch.cumprod(hard, 0).tolist()
    (A * c[0] + B * c[1] + C * c[2]).backward()
    s = torch.sigmoid(theta.detach())
    expected = torch.tensor(BY_HAND[mode][op]) * s * (1 - s)
    torch.testing.assert_close(theta.grad, expected)


def test_bool_damp_keeps_its_meaning_and_bad_modes_are_refused():
    assert gates._damp_mode(True) == 'product' and gates._damp_mode(False) == 'none'
    with pytest.raises(ValueError, match='product'):
        gates._damp_mode('late')
