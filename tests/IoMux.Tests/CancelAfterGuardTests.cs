using System.Text.RegularExpressions;

namespace IoMux.Tests;

/// <summary>NUnit's <c>[CancelAfter]</c> only cancels a token: a test that takes none runs on past its deadline,
/// and a hang in it holds the whole run (issue 19: 11 minutes in FileReadPoolTests). So every test under tests/
/// that carries the attribute takes a <see cref="CancellationToken"/> and uses it; a test whose waits each have their
/// own deadline carries no attribute. Read from the sources, so every test project is covered, not only this one.</summary>
public sealed partial class CancelAfterGuardTests
{
    /// <summary>Inert attributes still left, all in files that other parts of issue 19 are rewriting (the proxy's and
    /// the web server's system tests, the soak; the fuzz corpus replay reads its token now). Each entry is
    /// "path: method". Empty the list as they are fixed: the guard also fails on an entry that no longer offends,
    /// so the list only shrinks. Nothing may be added to it.</summary>
    private static readonly HashSet<string> KnownInert =
    [
    ];

    // The attribute on a line of attributes, not CancellationTokenSource.CancelAfter.
    [GeneratedRegex(@"^[ \t]*\[[^\]\n]*(?<![.\w])CancelAfter\s*\(", RegexOptions.Multiline)]
    private static partial Regex CancelAfter();

    // A member declaration: modifiers, a return type, the name and the opening parenthesis of its parameters.
    [GeneratedRegex(@"^(?<indent>[ \t]*)(?:(?:public|private|internal|protected|static|async|override|virtual|sealed|unsafe)\s+)+[\w<>\[\],.?() ]+?\s+(?<name>\w+)\s*\(", RegexOptions.Multiline)]
    private static partial Regex MethodStart();

    [GeneratedRegex(@"^[ \t]*(?:(?:public|private|internal|protected|static|sealed|abstract|partial)\s+)*(?:class|record|struct)\s", RegexOptions.Multiline)]
    private static partial Regex TypeStart();

    [Test]
    public void EveryCancelAfterTestTakesTheTokenAndUsesIt()
    {
        var root = TestProcesses.RepositoryRoot();
        var offenders = new SortedSet<string>(StringComparer.Ordinal);
        int attributes = 0;
        foreach (var file in Directory.EnumerateFiles(Path.Combine(root, "tests"), "*.cs", SearchOption.AllDirectories))
        {
            var relative = Path.GetRelativePath(root, file).Replace('\\', '/');
            if (relative.Contains("/bin/", StringComparison.Ordinal) || relative.Contains("/obj/", StringComparison.Ordinal)
                || relative == "tests/IoMux.Tests/CancelAfterGuardTests.cs")
                continue;
            var text = File.ReadAllText(file);
            foreach (Match attribute in CancelAfter().Matches(text))
            {
                attributes++;
                var method = MethodStart().Match(text, attribute.Index);
                var type = TypeStart().Match(text, attribute.Index);
                if (!method.Success || (type.Success && type.Index < method.Index))
                {
                    // On a fixture, the attribute covers tests this guard would have to find one by one: keep it on methods.
                    offenders.Add($"{relative}: [CancelAfter] on a class; put it on each test that takes the token");
                    continue;
                }
                var name = method.Groups["name"].Value;
                var parameters = Parameters(text, method.Index + method.Length);
                var token = Regex.Match(parameters, @"\bCancellationToken\s+(?<name>\w+)");
                string body = Body(text, method.Index + method.Length + parameters.Length, method.Groups["indent"].Value);
                bool readsContextToken = body.Contains("TestContext.CurrentContext.CancellationToken", StringComparison.Ordinal);
                bool usesParameter = token.Success && Regex.IsMatch(body, $@"\b{token.Groups["name"].Value}\b");
                if (!usesParameter && !readsContextToken)
                    offenders.Add($"{relative}: {name}");
            }
        }

        Assert.That(attributes, Is.GreaterThan(10), "the guard found too few [CancelAfter] attributes: is it reading the sources?");
        var unknown = offenders.Except(KnownInert).ToList();
        var fixedSince = KnownInert.Except(offenders).ToList();
        Assert.Multiple(() =>
        {
            Assert.That(unknown, Is.Empty,
                "[CancelAfter] on a test that does not use the token (take a CancellationToken parameter and pass it to "
                + "every wait, or drop the attribute and bound each wait):\n  " + string.Join("\n  ", unknown));
            Assert.That(fixedSince, Is.Empty, "no longer inert: remove from KnownInert\n  " + string.Join("\n  ", fixedSince));
        });
    }

    /// <summary>The parameter list from just after its "(" to its matching ")".</summary>
    private static string Parameters(string text, int start)
    {
        int depth = 1, i = start;
        for (; i < text.Length && depth > 0; i++)
            depth += text[i] switch { '(' => 1, ')' => -1, _ => 0 };
        return text[start..i];
    }

    /// <summary>The method's text after its parameters, up to the next member at the method's own indentation (the
    /// sources are formatted: a member's body is indented deeper, its closing brace at the same depth).</summary>
    private static string Body(string text, int start, string indent)
    {
        var lines = text[start..].Split('\n');
        var body = new List<string> { lines[0] };
        foreach (var line in lines.Skip(1))
        {
            if (line.StartsWith(indent, StringComparison.Ordinal) && line.Length > indent.Length
                && line[indent.Length] is not (' ' or '\t' or '{' or '}' or '\r') )
                break;
            body.Add(line);
        }
        return string.Join('\n', body);
    }
}
