"""The soak's independent checker.

It reads the API server and Prometheus with its own small clients and its own
reading of the objects; it never imports the controller (an import-linter
contract holds it to that), so a bug in the controller's way of seeing the
world cannot hide the same bug from the checker. The controller's status and
history are read only as *claims* to be checked against what is observed.
"""
