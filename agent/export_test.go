package agent

import "github.com/riptrace/riptrace/fleet"

// ReadExeAfter opens pid's executable as the discoverer and the source
// index do, calls exit, then reads from the file it opened the build info,
// the source files and the fingerprint of loc's file, as they would for a
// process that exits between the two.
func ReadExeAfter(pid int, exit func(), loc fleet.Location) ([]string, *fleet.Fingerprint, error) {
	f, _, err := openExe(pid)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	exit()
	if x := readExeFacts(f); x.notGo != nil {
		return nil, nil, x.notGo
	}
	files, err := dwarfFiles(f)
	if err != nil {
		return nil, nil, err
	}
	file, err := ResolveFile(files, loc)
	if err != nil {
		return files, nil, err
	}
	return files, dwarfFingerprint(f, file), nil
}
