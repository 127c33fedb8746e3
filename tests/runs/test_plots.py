import pytest
import torch

from pyro_vae.runs.plots import image_grid, manifold_grid, plot_latent, plot_manifold, project_2d


def test_manifold_grid_covers_equal_prior_mass():
    z = manifold_grid(n=5, low=0.1, high=0.9)
    assert z.shape == (25, 2)
    normal = torch.distributions.Normal(0.0, 1.0)
    quantiles = normal.cdf(z)
    # z_1 runs left to right along each row; z_2 runs top (high) to bottom (low); 1e-6: float32 cdf(icdf(p))
    assert torch.allclose(quantiles[:5, 0], torch.linspace(0.1, 0.9, 5), atol=1e-6)
    assert torch.allclose(quantiles[::5, 1], torch.linspace(0.9, 0.1, 5), atol=1e-6)


def test_pca_projection_keeps_the_two_widest_directions():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2000, 5, generator=g) * torch.tensor([0.1, 3.0, 0.2, 2.0, 0.1])
    xy, labels = project_2d(z)
    assert xy.shape == (2000, 2) and "principal component 1" in labels[0]
    # the variance of the projection is the variance of the two widest axes: 9 and 4 (sampling error ~3%)
    assert torch.allclose(xy.var(0), torch.tensor([9.0, 4.0]), rtol=0.1)
    assert abs(float(xy[:, 0] @ xy[:, 1]) / len(xy)) < 0.2  # uncorrelated components
    same, axes = project_2d(z[:, :2])
    assert torch.equal(same, z[:, :2]) and axes == ("$z_1$", "$z_2$")


def test_latent_and_manifold_figures_are_written(tmp_path):
    plot_latent(torch.randn(100, 3), torch.randint(0, 10, (100,)), tmp_path / "latent.png")
    plot_latent(torch.randn(100, 2), None, tmp_path / "unlabelled.png")
    plot_manifold(torch.rand(16, 784), (1, 28, 28), tmp_path / "manifold.png")
    for name in ("latent.png", "unlabelled.png", "manifold.png"):
        assert (tmp_path / name).stat().st_size > 1000


@pytest.mark.parametrize("dims", [1, 3])
def test_the_latent_figure_names_the_classes_of_a_folder(tmp_path, monkeypatch, dims):
    # a folder's class subfolders are the legend (the figure said 0 and 1 for "circles" and "squares")
    from pyro_vae.runs import plots

    drawn = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: drawn.append(fig))
    plot_latent(torch.randn(40, dims), torch.arange(40) % 2, tmp_path / "latent.png", classes=("circles", "squares"))
    texts = [t.get_text() for ax in drawn[0].axes for t in [*ax.get_yticklabels(), *(
        ax.get_legend().get_texts() if ax.get_legend() else [])]]
    assert "circles" in texts and "squares" in texts


@pytest.mark.parametrize("n, nrow", [(64, 8), (16, 8), (10, 4), (3, 8), (1, 8)])
def test_image_grid_lays_images_out_as_torchvisions_make_grid(n, nrow):
    from torchvision.utils import make_grid

    images = torch.rand(n, 6 * 5)
    expected = make_grid(images.reshape(n, 1, 6, 5), nrow=nrow, padding=2, pad_value=1.0)[:1]  # it repeats grey 3x
    assert torch.equal(image_grid(images, (1, 6, 5), nrow), expected)
    colour = torch.rand(n, 3 * 6 * 5)
    expected = make_grid(colour.reshape(n, 3, 6, 5), nrow=nrow, padding=2, pad_value=1.0)
    assert torch.equal(image_grid(colour, (3, 6, 5), nrow), expected)
