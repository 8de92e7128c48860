"""The lecture path: the lecture's sections as stops, each with a live component (`stops`), the
components as blocks the page and the handout render (`panels`), everything computed ahead of a
class and kept on disk (`prepare`), and the static handout (`handout`)."""
