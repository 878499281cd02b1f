"""Hypothesis strategies for boxes (ymin, xmin, ymax, xmax) and image sides, shared by tests."""

from hypothesis import strategies as st

value = st.integers(-40, 140)
any_box = st.tuples(value, value, value, value)
sides = st.integers(1, 120)


@st.composite
def good_boxes(draw):
    """Non-empty boxes (ymin < ymax, xmin < xmax), possibly outside an image."""
    y0, y1 = sorted(draw(st.lists(value, min_size=2, max_size=2, unique=True)))
    x0, x1 = sorted(draw(st.lists(value, min_size=2, max_size=2, unique=True)))
    return (y0, x0, y1, x1)
