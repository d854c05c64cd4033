using System.Text.RegularExpressions;

namespace IoMux.Tests;

/// <summary>Every C# block in the README and docs/ comes from a file that the solution builds: each is preceded by
/// <c>&lt;!-- sample: path --&gt;</c>, and its lines appear, in order, in that file (a block may leave lines out,
/// never add or change one). So the code the docs show compiles in CI.</summary>
public sealed partial class DocsSamplesTests
{
    [GeneratedRegex(@"<!-- sample: (?<path>[^ ]+) -->\s*```csharp\n(?<code>.*?)```", RegexOptions.Singleline)]
    private static partial Regex QuotedSample();

    [GeneratedRegex(@"```csharp", RegexOptions.Singleline)]
    private static partial Regex AnyCSharpBlock();

    private static string Root() => TestProcesses.RepositoryRoot();

    public static IEnumerable<string> Documents()
    {
        var root = Root();
        yield return "README.md";
        foreach (var file in Directory.GetFiles(Path.Combine(root, "docs"), "*.md").Order())
            yield return Path.GetRelativePath(root, file);
    }

    [TestCaseSource(nameof(Documents))]
    public void EveryCSharpBlockIsQuotedFromABuiltSample(string document)
    {
        var root = Root();
        var text = File.ReadAllText(Path.Combine(root, document));
        var quoted = QuotedSample().Matches(text);
        Assert.That(quoted.Count, Is.EqualTo(AnyCSharpBlock().Matches(text).Count), $"{document}: a csharp block without <!-- sample: path -->");
        foreach (Match block in quoted)
        {
            var path = Path.Combine(root, block.Groups["path"].Value);
            Assert.That(File.Exists(path), Is.True, $"{document}: {block.Groups["path"].Value} does not exist");
            Assert.That(Path.GetDirectoryName(path), Does.Exist);
            var project = Directory.GetFiles(Path.GetDirectoryName(path)!, "*.csproj").Single();
            Assert.That(File.ReadAllText(Path.Combine(root, "IoMux.sln")), Does.Contain(Path.GetRelativePath(root, project).Replace('/', '\\')),
                $"{project} is not in the solution, so CI would not build it");
            var source = File.ReadAllLines(path).Select(l => l.Trim()).ToList();
            int at = 0;
            foreach (var line in block.Groups["code"].Value.Split('\n').Select(l => l.Trim()).Where(l => l.Length > 0))
            {
                while (at < source.Count && source[at] != line)
                    at++;
                Assert.That(at, Is.LessThan(source.Count), $"{document}: the line '{line}' is not in {block.Groups["path"].Value} (in this order)");
                at++;
            }
        }
    }
}
