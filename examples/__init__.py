"""Worked examples built on the stack: tasks a program can check, with end-to-end runs of the stages."""
