package archive

import (
	"errors"
	"fmt"
	"path/filepath"
)

// MainNode is what a chain whose records name no node is called where a
// name is needed (exports, reports): the chain of a practice's only relay.
const MainNode = "main"

// NodeName is node, or MainNode for a chain that names none.
func NodeName(node string) string {
	if node == "" {
		return MainNode
	}
	return node
}

// errOtherNode stops Open on a folder that holds another relay's chain.
var errOtherNode = errors.New("archive: this archive folder holds another relay's chain")

// ChainNode is the node the chain in dir names: that of its newest
// complete record that can be read ("" when it names none, or holds no
// record). A chain written before nodes had names may take one later;
// once named, every record names the same node (Open refuses anything
// else). Damage does not hide the node: what records before it say is
// taken (finding damage is verify's).
func ChainNode(dir string) (string, error) {
	segs, err := listSegments(dir)
	if err != nil {
		return "", fmt.Errorf("archive: %w", err)
	}
	for i := len(segs) - 1; i >= 0; i-- {
		var node string
		found := false
		scanHeaders(filepath.Join(dir, segs[i]), func(h *header, _ []byte) { node, found = h.Node, true })
		if found {
			return node, nil
		}
	}
	return "", nil
}

// checkChainNode refuses to write this relay's records into a chain that
// names another node: a data_dir copied to a second server by mistake
// would otherwise grow two chains under one name, or one chain under two.
// last is the newest complete record, which start reads anyway (nil: none
// in the open segment, and the chain is read for its node). A chain that
// names no node yet (the practice's only relay until now) takes the name.
func (a *Archive) checkChainNode(last *storedRecord) error {
	var has string
	if last != nil {
		has = last.h.Node
	} else {
		var err error
		if has, err = ChainNode(a.dir); err != nil {
			return err
		}
	}
	dir, node := a.dir, a.opts.Node
	switch {
	case has == node:
		return nil
	case has == "":
		a.log.Info("archive: the chain names no node yet; its records name this one from now on", "node", node)
		return nil
	case node == "":
		return fmt.Errorf("%w: %s is the chain of the relay named %q, and archive.node is not set here. If this server is %q, set archive.node = %q; if its data_dir was copied from that relay, give this relay a data_dir of its own (each relay keeps its own spool and archive)",
			errOtherNode, dir, has, has, has)
	}
	return fmt.Errorf("%w: %s is the chain of the relay named %q, but archive.node is %q here. A data_dir copied from %q? Give this relay a data_dir of its own (each relay keeps its own spool and archive); a node's name cannot be changed once its chain has records",
		errOtherNode, dir, has, node, has)
}
