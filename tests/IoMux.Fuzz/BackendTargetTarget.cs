using System.Net;
using System.Net.Sockets;
using System.Text;
using IoMux.SocketProxy;

namespace IoMux.Fuzz;

// The backend-target fuzz target (FuzzTargets.Run dispatches to it).
internal sealed partial class FuzzTargets
{
    // ---- backend-target: BackendTarget.Parse ----

    private static void BackendTargetText(ReadOnlySpan<byte> input)
    {
        string text = Encoding.UTF8.GetString(input);
        BackendTarget target;
        try
        {
            target = BackendTarget.Parse(text);
        }
        catch (FormatException)
        {
            return; // documented
        }
        Require(target.Text == text, "Text is not the input");
        Require(target.Host is null != target.FixedEndpoint is null, $"'{text}': both or neither of a host name and an endpoint");
        switch (target.FixedEndpoint)
        {
            case UnixDomainSocketEndPoint:
                Require(target.Port == 0, $"'{text}': a socket path with port {target.Port}");
                break;
            case IPEndPoint ip:
                Require(ip.Port == target.Port && target.Port is >= 1 and <= 65535, $"'{text}': port {target.Port}, endpoint {ip}");
                break;
            case null:
                Require(!string.IsNullOrEmpty(target.Host) && target.Port is >= 1 and <= 65535, $"'{text}': host '{target.Host}' port {target.Port}");
                break;
            default:
                throw new PropertyViolationException($"'{text}': endpoint of type {target.FixedEndpoint.GetType()}");
        }
    }
}
