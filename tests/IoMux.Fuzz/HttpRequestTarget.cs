using System.Text;
using IoMux.Interop;
using IoMux.Web.Http;

namespace IoMux.Fuzz;

// The http-request fuzz target (FuzzTargets.Run dispatches to it).
internal sealed partial class FuzzTargets
{
    // ---- http-request: HttpRequestParser.Parse, then StaticRoot.Normalize and StaticRoot.Open on the target ----

    private void RequestView(ReadOnlySpan<byte> input)
    {
        var head = new HttpRequestHead();
        var status = HttpRequestParser.Parse(input, head); // documents no exception: any is a crash
        switch (status)
        {
            case ParseStatus.Complete:
                Require(head.ErrorStatus == 0, $"complete head with error status {head.ErrorStatus}");
                Require(head.Version is 10 or 11, $"complete head with version {head.Version}");
                Require(head.HeadLength > 0 && head.HeadLength <= input.Length && head.HeadLength <= HttpRequestParser.MaxHead,
                    $"head length {head.HeadLength} outside the {input.Length} input bytes");
                Require(head.TargetStart > 0 && head.TargetLength > 0 && head.TargetStart + head.TargetLength < head.HeadLength,
                    $"target {head.TargetStart}+{head.TargetLength} outside the head");
                Require(!head.HasTransferEncoding && head.ContentLength <= 0, "a complete head that announces a body");
                Require(head.MethodLength > 0 && head.MethodStart + head.MethodLength < head.TargetStart, "the method overlaps the target");
                Conditions(input, head);
                break;
            case ParseStatus.Invalid:
                Require(head.ErrorStatus is 400 or 413 or 414 or 431 or 505, $"invalid head with status {head.ErrorStatus}");
                break;
            case ParseStatus.Incomplete:
                Require(head.ErrorStatus == 0, "incomplete head with an error status");
                Require(input.Length < HttpRequestParser.MaxHead, $"incomplete after {input.Length} bytes, past the {HttpRequestParser.MaxHead}-byte limit");
                return;
            default:
                throw new PropertyViolationException($"parse status {status}");
        }
        if (head.TargetLength > 0) // the request line parsed (the headers may still have been refused)
            Resolve(input.Slice(head.TargetStart, head.TargetLength));
    }

    /// <summary>The fields the static server acts on lie inside the header section, and the Range and
    /// precondition code never throws on them and never yields a range outside the file.</summary>
    private static void Conditions(ReadOnlySpan<byte> input, HttpRequestHead head)
    {
        foreach (var (name, field) in new[] { ("Range", head.Range), ("If-Range", head.IfRange), ("If-None-Match", head.IfNoneMatch), ("If-Modified-Since", head.IfModifiedSince) })
            Require(!field.Present || field.Start >= head.FieldsStart && field.Start + field.Length <= head.HeadLength,
                $"{name} at {field.Start}+{field.Length} outside the fields {head.FieldsStart}..{head.HeadLength}");
        foreach (long length in new long[] { 0, 1, 5, 1 << 20, long.MaxValue / 2 })
        {
            var range = ByteRange.Parse(head.Range.In(input), length);
            Require(range.IsWhole || range.Unsatisfiable || 0 <= range.First && range.First <= range.Last && range.Last < length,
                $"range {range.First}-{range.Last} of a {length}-byte file");
        }
        Validators.NotModified(head.IfNoneMatch.In(input), head.IfModifiedSince.In(input), "\"5f1a2b3c-5\""u8, 0x5f1a2b3c);
        Validators.IfRangeHolds(head.IfRange.In(input), "\"5f1a2b3c-5\""u8, 0x5f1a2b3c);
    }

    private void Resolve(ReadOnlySpan<byte> target)
    {
        var tree = _tree.Value;
        Span<byte> normalized = stackalloc byte[HttpRequestParser.MaxRequestLine + 16];
        int normalizeStatus = StaticRoot.Normalize(target, normalized, out int length);
        Require(normalizeStatus is 0 or 400, $"Normalize answered {normalizeStatus}");
        if (normalizeStatus == 0)
        {
            var path = normalized[..length];
            Require(length == 0 || path[0] != '/', "normalized path is absolute");
            Require(!path.Contains((byte)0), "normalized path holds a NUL");
            if (!path.IsEmpty) // "" is the root itself
            {
                foreach (var range in path.Split((byte)'/'))
                {
                    var segment = path[range];
                    Require(!segment.IsEmpty && !segment.SequenceEqual("."u8) && !segment.SequenceEqual(".."u8),
                        $"normalized path keeps segment '{Encoding.UTF8.GetString(segment)}'");
                }
            }
            string lexical = Path.GetFullPath(Path.Join(tree.Root, Encoding.UTF8.GetString(path)));
            Require(IsBeneath(lexical, tree.Root), $"'{Encoding.UTF8.GetString(target)}' resolves to {lexical}, outside {tree.Root}");
        }
        int openStatus = tree.Static.Open(target, out int fd, out long size, out _, out _);
        Require(openStatus is 0 or 301 or 400 or 404, $"Open answered {openStatus}");
        Require(normalizeStatus == 0 || openStatus == 400, $"Open answered {openStatus} for a target Normalize refused");
        if (openStatus != 0)
        {
            Require(fd == -1, $"Open answered {openStatus} and left fd {fd}");
            return;
        }
        try
        {
            // What the kernel opened, not what the code meant to open: the descriptor's own path.
            string? opened = new FileInfo($"/proc/self/fd/{fd}").LinkTarget;
            Require(opened is not null && IsBeneath(opened, tree.Static.RealRoot) && opened != tree.Static.RealRoot,
                $"'{Encoding.UTF8.GetString(target)}' opened {opened}, outside {tree.Static.RealRoot}");
            Require(size >= 0, $"size {size}");
        }
        finally
        {
            LibC.CloseQuietly(fd);
        }
    }

    private static bool IsBeneath(string path, string root) =>
        path == root || path.StartsWith(root + "/", StringComparison.Ordinal);

    /// <summary>A served root with files, an index, links that stay inside and links that leave, next to a file
    /// that must never be served.</summary>
    private sealed class ServedTree : IDisposable
    {
        private readonly string _top = Path.Combine(Path.GetTempPath(), $"iomux-fuzz-{Environment.ProcessId}-{Guid.NewGuid():N}");

        public ServedTree()
        {
            Root = Path.Combine(_top, "www");
            Directory.CreateDirectory(Path.Combine(Root, "docs", "deep"));
            File.WriteAllText(Path.Combine(_top, "secret.txt"), "outside the root\n");
            File.WriteAllText(Path.Combine(Root, "index.html"), "<p>root</p>\n");
            File.WriteAllText(Path.Combine(Root, "a.txt"), "a\n");
            File.WriteAllText(Path.Combine(Root, "docs", "index.html"), "<p>docs</p>\n");
            File.WriteAllText(Path.Combine(Root, "docs", "deep", "b.css"), "b{}\n");
            File.CreateSymbolicLink(Path.Combine(Root, "out"), "../secret.txt");
            File.CreateSymbolicLink(Path.Combine(Root, "up"), "..");
            File.CreateSymbolicLink(Path.Combine(Root, "abs"), Path.Combine(_top, "secret.txt"));
            File.CreateSymbolicLink(Path.Combine(Root, "in"), "docs");
            File.CreateSymbolicLink(Path.Combine(Root, "absin"), Path.Combine(Root, "a.txt"));
            Static = new StaticRoot(Root);
            Root = Path.GetFullPath(Root);
        }

        public string Root { get; }

        public StaticRoot Static { get; }

        public void Dispose()
        {
            Static.Dispose();
            Directory.Delete(_top, recursive: true);
        }
    }
}
