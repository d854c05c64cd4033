using System.Text.RegularExpressions;

namespace IoMux.Tests;

/// <summary>Every path of this repository that the README, the CHANGELOG and docs/ name exists, so a newcomer who
/// follows a doc to a test or a source file finds it (issue 23: docs named test files that had moved). Checked: a
/// relative Markdown link (from the document's folder); a path in backticks under one of the repository's own
/// top-level folders (<c>src/</c> only below a project folder of ours: <c>src/unix/kqueue.c</c> is libuv's); a bare
/// C# file name in backticks (somewhere in the repository). Left alone: globs, generated output (bench/out, obj,
/// bin), other projects' paths.</summary>
public sealed partial class DocPathTests
{
    [GeneratedRegex(@"`(?<path>[^`\s]+)`")]
    private static partial Regex Quoted();

    [GeneratedRegex(@"\]\((?<link>[^)\s]+)\)")]
    private static partial Regex Link();

    private static readonly string[] OwnFolders = ["bench", "docs", "samples", "tests", "tools", "src"];
    private static readonly string[] Generated = ["bench/out/", "/obj/", "/bin/"];

    private static string Root() => TestProcesses.RepositoryRoot();

    public static IEnumerable<string> Documents()
    {
        var root = Root();
        yield return "README.md";
        yield return "CHANGELOG.md";
        foreach (var file in Directory.GetFiles(Path.Combine(root, "docs"), "*.md").Order())
            yield return Path.GetRelativePath(root, file);
    }

    [TestCaseSource(nameof(Documents))]
    public void EveryPathADocumentNamesExists(string document)
    {
        var missing = MissingPaths(Root(), document);
        Assert.That(missing, Is.Empty, $"{document} names paths that do not exist");
    }

    /// <summary>The checker itself: a moved test file, a link one folder off and a bare name are caught, another
    /// project's path and generated output are not.</summary>
    [Test]
    public void TheCheckFindsAPathThatDoesNotExist()
    {
        var root = Root();
        var doc = Path.Combine(Path.GetTempPath(), $"iomux-docpath-{Environment.ProcessId}");
        Directory.CreateDirectory(Path.Combine(doc, "docs"));
        try
        {
            foreach (var folder in OwnFolders)
                Directory.CreateSymbolicLink(Path.Combine(doc, folder == "docs" ? "docs-real" : folder), Path.Combine(root, folder));
            File.WriteAllText(Path.Combine(doc, "docs", "X.md"), """
                Tests: `tests/IoMux.Tests/NoSuchTests.cs`, `tests/IoMux.Tests/DocPathTests.cs`, [link](src/Loop), [up](../src/Loop),
                `NoSuchFileTests.cs`, `DocPathTests.cs`, libuv's `src/unix/kqueue.c`, `bench/out/raw.txt`, `bench/c/*.c`.
                """);
            Assert.That(MissingPaths(doc, Path.Combine("docs", "X.md")),
                Is.EquivalentTo(new[] { "tests/IoMux.Tests/NoSuchTests.cs", "src/Loop", "NoSuchFileTests.cs" }));
        }
        finally
        {
            Directory.Delete(doc, recursive: true);
        }
    }

    private static List<string> MissingPaths(string root, string document)
    {
        var text = File.ReadAllText(Path.Combine(root, document));
        var folder = Path.GetDirectoryName(Path.Combine(root, document))!;
        var ownProjects = Directory.Exists(Path.Combine(root, "src"))
            ? Directory.GetDirectories(Path.Combine(root, "src")).Select(Path.GetFileName).ToHashSet()
            : [];
        HashSet<string>? names = null; // every file name in the repository, listed at the first bare name
        var missing = new List<string>();
        foreach (Match m in Link().Matches(text))
        {
            var link = m.Groups["link"].Value.Split('#')[0];
            if (link.Length == 0 || link.Contains("://", StringComparison.Ordinal) || link.StartsWith("mailto:", StringComparison.Ordinal))
                continue;
            if (!File.Exists(Path.Combine(folder, link)) && !Directory.Exists(Path.Combine(folder, link)))
                missing.Add(link);
        }
        foreach (Match m in Quoted().Matches(text))
        {
            var path = m.Groups["path"].Value.TrimEnd('.', ',', ';', ':', ')');
            if (path.Contains('*') || path.Contains("://", StringComparison.Ordinal) || Generated.Any(g => ("/" + path).Contains(g, StringComparison.Ordinal)))
                continue;
            var parts = path.Split('/');
            if (parts.Length > 1 && OwnFolders.Contains(parts[0]))
            {
                if (parts[0] == "src" && !ownProjects.Contains(parts[1]))
                    continue; // another project's source tree (libuv, systemd), named where we follow it
                if (!File.Exists(Path.Combine(root, path)) && !Directory.Exists(Path.Combine(root, path)))
                    missing.Add(path);
            }
            else if (parts.Length == 1 && path.EndsWith(".cs", StringComparison.Ordinal))
            {
                names ??= Directory.EnumerateFiles(root, "*.cs", new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = 0 })
                    .Select(f => Path.GetFileName(f)).ToHashSet();
                if (!names.Contains(path))
                    missing.Add(path);
            }
        }
        return missing;
    }
}
