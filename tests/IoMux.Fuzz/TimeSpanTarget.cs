using System.Text;
using IoMux.SocketProxy;

namespace IoMux.Fuzz;

// The timespan fuzz target (FuzzTargets.Run dispatches to it).
internal sealed partial class FuzzTargets
{
    // ---- timespan: TimeSpans.Parse ----

    private static void TimeSpanText(ReadOnlySpan<byte> input)
    {
        string text = Encoding.UTF8.GetString(input);
        TimeSpan? span;
        try
        {
            span = TimeSpans.Parse(text);
        }
        catch (FormatException)
        {
            return; // documented
        }
        if (span is null)
            Require(text.Trim() == "infinity", $"'{text}' parsed as infinity");
        else
            Require(span.Value >= TimeSpan.Zero, $"'{text}' parsed as {span.Value}");
    }
}
