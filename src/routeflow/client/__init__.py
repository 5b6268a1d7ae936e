"""rfclient: runs inside each VM, follows its kernel over netlink, tells rfserver."""
