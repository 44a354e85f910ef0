"""Lists the files of a data folder so that no file is read twice and no split leaks into another.

A folder is scanned one area at a time (`unlabeled`, `labeled/<class>`, `test/<class>`). Symbolic
links are followed by their real path, with three rules:

* a link that resolves inside its own area is followed at most once per real directory and per
  real file (a loop such as `unlabeled/a/loop -> ..` is listed in `links_not_followed`, its files
  are read once);
* a link that resolves anywhere else inside the data folder (another split, another class, the
  data folder itself) is refused with a ValueError naming the link and its target: test images
  reaching pretraining, or one class's images reaching another's, would bias the gate silently;
* a link that resolves to a folder holding the data folder (its parent, say) is refused: through it
  the scan would reach every split and class again, the other classes' images read as this one's;
* any other link that resolves outside the data folder is refused unless `follow_external_links` is set.

Object-storage URLs (gs://, s3://) have no symbolic links and are listed with tf.io.gfile.
"""

import dataclasses
import os
import posixpath
from typing import Dict, List, Set

import tensorflow as tf


def is_local(path: str) -> bool:
    return "://" not in path


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


@dataclasses.dataclass
class FolderScanner:
    """Scans areas of one data folder; remembers what it read across areas.

    Attributes:
      root: the data folder.
      follow_external_links: follow links that resolve outside `root` (data.follow_external_links).
      links_not_followed: {"path": relative link path, "reason": why} for links skipped (loops,
        a directory or file already read, broken links).
    """

    root: str
    follow_external_links: bool = False
    links_not_followed: List[Dict[str, str]] = dataclasses.field(default_factory=list)
    _seen_directories: Set[str] = dataclasses.field(default_factory=set)
    _seen_files: Set[str] = dataclasses.field(default_factory=set)

    def list_files(self, area: str) -> List[str]:
        """All files below root/area (hidden ones excluded), as sorted paths relative to root.

        Raises:
          ValueError: a symbolic link that leaves its area (see the module docstring).
        """
        if not is_local(self.root):
            return self._list_remote(area)
        found: List[str] = []
        area_real = os.path.realpath(os.path.join(self.root, area))
        expected = os.path.join(os.path.realpath(self.root), area)
        if area_real != expected:  # the area folder itself, or a parent, is a symbolic link
            self._check_target(area_real, area, area)
        self._walk(os.path.join(self.root, area), area, area_real, found)
        return sorted(found)

    def _list_remote(self, area: str) -> List[str]:
        found = []
        for directory, _, files in tf.io.gfile.walk(posixpath.join(self.root, area)):
            relative_directory = directory[len(self.root):].strip("/")
            found.extend(posixpath.join(relative_directory, name) for name in files if not name.startswith("."))
        return sorted(found)

    def _walk(self, directory: str, relative: str, area_real: str, found: List[str]) -> None:
        real = os.path.realpath(directory)
        if real in self._seen_directories:
            self.links_not_followed.append({"path": relative, "reason": f"directory {real} was already read"})
            return
        self._seen_directories.add(real)
        with os.scandir(directory) as entries:
            for entry in sorted(entries, key=lambda item: item.name):
                if entry.name.startswith("."):
                    continue
                entry_relative = posixpath.join(relative, entry.name)
                if entry.is_symlink() and not self._may_follow(entry.path, entry_relative, area_real):
                    continue
                if entry.is_dir():
                    self._walk(entry.path, entry_relative, area_real, found)
                elif entry.is_file():
                    entry_real = os.path.realpath(entry.path)
                    if entry_real in self._seen_files:
                        self.links_not_followed.append({"path": entry_relative,
                                                        "reason": f"file {entry_real} was already read"})
                        continue
                    self._seen_files.add(entry_real)
                    found.append(entry_relative)

    def _may_follow(self, link: str, relative: str, area_real: str) -> bool:
        target = os.path.realpath(link)
        if not os.path.exists(target):
            self.links_not_followed.append({"path": relative, "reason": f"broken symbolic link to {target}"})
            return False
        if _inside(target, area_real):
            return True
        self._check_target(target, relative, area_real)
        return True

    def _check_target(self, target: str, relative: str, area: str) -> None:
        """Raises unless a link to `target` (outside its own area) may be followed."""
        root_real = os.path.realpath(self.root)
        if _inside(target, root_real):
            raise ValueError(
                f"{relative} in {self.root} is a symbolic link to {target}, outside its own folder "
                f"({area}): images of one split or class must not be read as another's (a test image in "
                "pretraining biases the gate towards the candidate); remove the link or copy the files"
            )
        if _inside(root_real, target):
            raise ValueError(
                f"{relative} in {self.root} is a symbolic link to {target}, which holds the data folder "
                f"{root_real}: through it every split and class would be read again; remove the link"
            )
        if not self.follow_external_links:
            raise ValueError(
                f"{relative} in {self.root} is a symbolic link to {target}, outside the data folder "
                f"{root_real}; set data.follow_external_links: true to read it"
            )
