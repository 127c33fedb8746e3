"""What pyro-vae-bdmc says about its table: an inverted sandwich beyond its noise (issue 38: reverse 0.85 ± 0.47
nats below forward at 50 steps and 2 chains was printed without a word)."""

from pyro_vae.commands.bdmc import inverted_sandwiches


def row(steps, gap, se):
    return {"num_steps": steps, "gap": {"mean": gap, "se": se}}


def test_an_inverted_sandwich_beyond_its_noise_is_said_with_what_to_raise():
    lines = inverted_sandwiches([row(50, -0.85, 0.3), row(500, 0.4, 0.1)], chains=2)
    assert lines == ["at 50 steps the sandwich is inverted: reverse AIS sits 0.85 ± 0.30 nats below forward AIS, "
                     "beyond its noise; with 2 chains and this few steps neither bound holds yet: raise --ais-steps "
                     "(and --ais-chains)"]


def test_a_crossing_within_two_standard_errors_or_of_one_image_is_not_flagged():
    assert inverted_sandwiches([row(50, -0.85, 0.47), row(100, -0.1, None)], chains=2) == []
